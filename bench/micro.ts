/**
 * Micro-benchmarks of the pieces on the request path, in nanoseconds per call (best of several
 * batches, so a busy machine inflates them less), to tell which one costs what when a ratio target
 * is missed. In process, on PGlite for the database provider's warm path (no server needed).
 *
 *   npx tsx bench/micro.ts
 */
import { createHash, hash as oneShotHash } from 'node:crypto'
import { parseBearer, hasDuplicateAuthorization } from '../lib/header.js'
import { checkTokenFormat, generateToken, hashToken } from '../lib/store/token-format.js'
import { SecretTokenAuthProvider } from '../lib/providers/secret.js'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { FST_TOKEN_AUTH_INVALID_TOKEN } from '../lib/errors.js'
import { createDatabase } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'

let sink: unknown
function bench (name: string, fn: () => unknown, n = 200_000): number {
  for (let i = 0; i < n / 10; i++) sink = fn() // warm up the JIT
  let best = Infinity
  for (let batch = 0; batch < 7; batch++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) sink = fn()
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n)
  }
  console.log(`${best.toFixed(0).padStart(7)} ns  ${name}`)
  return best
}

async function benchAsync (name: string, fn: () => Promise<unknown> | unknown, n = 100_000): Promise<number> {
  for (let i = 0; i < n / 10; i++) sink = await fn()
  let best = Infinity
  for (let batch = 0; batch < 7; batch++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) sink = await fn()
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n)
  }
  console.log(`${best.toFixed(0).padStart(7)} ns  ${name}`)
  return best
}

const token = generateToken()
const header = `Bearer ${token}`
const rawHeaders = ['host', '127.0.0.1:3000', 'user-agent', 'autocannon', 'accept', '*/*', 'authorization', header, 'connection', 'keep-alive']
const bad = token.slice(0, -1) + (token.at(-1) === 'A' ? 'B' : 'A')

bench('parseBearer', () => parseBearer(header, 1024))
bench('hasDuplicateAuthorization (5 headers)', () => hasDuplicateAuthorization(rawHeaders))
bench('checkTokenFormat (good)', () => checkTokenFormat(token, 'tat'))
bench('checkTokenFormat (bad checksum)', () => checkTokenFormat(bad, 'tat'))
bench('hashToken (crypto.hash sha256 hex)', () => hashToken(token))
bench('createHash(sha256).update().digest(hex)', () => createHash('sha256').update(token).digest('hex'))
bench('crypto.hash sha256 → Buffer', () => oneShotHash('sha256', token, 'buffer'))
const secrets = Array.from({ length: 10 }, () => generateToken('svc'))
const secret = new SecretTokenAuthProvider({ tokens: secrets })
bench('SecretTokenAuthProvider.getUser (10 tokens)', () => secret.getUser(secrets[9]))
bench('new FST_TOKEN_AUTH_INVALID_TOKEN()', () => new FST_TOKEN_AUTH_INVALID_TOKEN())
bench('Date.now()', () => Date.now())

const database = await createDatabase(undefined, { memory: true })
await migrate(database)
const service = new TokenService(database, { passwordParams: { ln: 10, r: 8, p: 1 } })
const user = await service.createUser('micro', 'pw')
const issued = await service.issueToken(user.id)
const provider = new DrizzleTokenAuthProvider({ db: database.db, lastUsedInterval: false })
await provider.getUser(issued.token)
bench('DrizzleTokenAuthProvider.getUser warm (cache hit)', () => provider.getUser(issued.token))
const unknown = generateToken()
await provider.getUser(unknown)
bench('DrizzleTokenAuthProvider.getUser unknown (negative cache)', () => provider.getUser(unknown))
bench('DrizzleTokenAuthProvider.getUser bad checksum', () => provider.getUser(bad))
await benchAsync('DrizzleTokenAuthProvider.getUser cold on PGlite (cache off)', (() => {
  const cold = new DrizzleTokenAuthProvider({ db: database.db, cache: false, lastUsedInterval: false })
  return () => cold.getUser(issued.token)
})(), 2_000)
await provider.close()
await database.close()
if (sink === Symbol.for('never')) console.log(sink)
