// A database outage, for real: a TCP proxy (test/helpers/tcp-proxy.ts) sits between the app and
// PostgreSQL and is cut (connections reset, port closed) or blackholed (connections accepted, nothing
// forwarded) while requests are in flight. Protected routes answer 503 with Retry-After (a cached
// token may still pass, an unknown one never does), logins answer 503 and leave no token row behind,
// nothing is a 500, the process does not crash, and service is back within 2 s of the proxy's return.
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import tokenAuth from '../lib/index.js'
import { createDatabase, type Database } from '../lib/store/database.js'
import { generateToken } from '../lib/store/token-format.js'
import { FAST_PASSWORD_PARAMS, freshDatabase, query, requirePostgres } from './helpers/db.js'
import { TcpProxy } from './helpers/tcp-proxy.js'
import { bearer } from './helpers/http.js'

const PASSWORD = 'correct horse battery staple'
const QUERY_TIMEOUT = 500

// The process must survive: any uncaught error during the file fails it.
const crashes: unknown[] = []
process.on('uncaughtException', (err) => { crashes.push(err) })
process.on('unhandledRejection', (err) => { crashes.push(err) })

interface Setup {
  app: FastifyInstance
  proxy: TcpProxy
  direct: Database
  userId: number
}

async function setup (t: Test): Promise<Setup> {
  const { url, database: direct, service } = await freshDatabase(t)
  const proxy = new TcpProxy({ host: new URL(url!).hostname, port: Number(new URL(url!).port || 5432) })
  await proxy.up()
  t.teardown(() => proxy.down())
  // The app reaches PostgreSQL through the proxy only; `direct` is the test's own view of the rows.
  const database = await createDatabase(proxy.urlFor(url!), { max: 4, connectTimeout: 2 })
  t.teardown(() => database.close())
  const app = Fastify()
  await app.register(tokenAuth, {
    database,
    service: { passwordParams: FAST_PASSWORD_PARAMS },
    drizzle: { queryTimeout: QUERY_TIMEOUT }
  })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ id: req.user?.id }))
  await app.ready()
  t.teardown(() => app.close())
  const user = await service.createUser('alice', PASSWORD)
  return { app, proxy, direct, userId: user.id as number }
}

const me = async (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> => await app.inject({ url: '/me', headers: bearer(token) })
const login = async (app: FastifyInstance): Promise<LightMyRequestResponse> =>
  await app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: PASSWORD } })

function assertUnavailable (t: Test, res: LightMyRequestResponse, what: string): void {
  t.equal(res.statusCode, 503, `${what}: 503`)
  t.equal(res.headers['retry-after'], '5', `${what}: Retry-After`)
  t.same(res.json(), {
    statusCode: 503,
    code: 'FST_TOKEN_AUTH_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'Authentication is temporarily unavailable, retry later'
  }, `${what}: Fastify's error body, generic message`)
}

async function tokenRows (direct: Database, userId: number): Promise<string[]> {
  const rows = await query<{ token_hash: string }>(direct, 'select token_hash from token_auth_tokens where user_id = $1 order by id', [userId])
  return rows.map((r) => r.token_hash)
}

/** Polls a cold, valid token until it passes again; resolves to the ms it took. */
async function recovery (app: FastifyInstance, tokens: string[]): Promise<number> {
  const start = Date.now()
  for (let i = 0; ; i++) {
    // A token not looked up before: the answer must come from the database.
    const res = await me(app, tokens[i % tokens.length])
    if (res.statusCode === 200) return Date.now() - start
    if (res.statusCode !== 503) throw new Error(`unexpected ${res.statusCode} while recovering`)
    if (Date.now() - start > 10_000) throw new Error('not recovered within 10 s')
    await sleep(20)
    app.tokenAuth.provider!.clearCache()
  }
}

t.test('the proxy is cut while requests are in flight: 503s, no 500, no unknown token passes; back within 2 s', async (t) => {
  if (!requirePostgres(t)) return
  const { app, proxy, direct, userId } = await setup(t)
  const svc = app.tokenAuth.service!
  const cached = (await svc.issueToken(userId)).token
  t.equal((await me(app, cached)).statusCode, 200, 'a token seen before the outage (now cached)')
  const cold = await Promise.all(Array.from({ length: 40 }, async () => (await svc.issueToken(userId)).token))
  const before = await tokenRows(direct, userId)

  // A stream of requests of every kind, with the cut in the middle of it.
  const kinds = ['cached', 'cold', 'unknown', 'login'] as const
  const inflight: Array<Promise<{ kind: typeof kinds[number], res: LightMyRequestResponse }>> = []
  for (let i = 0; i < 200; i++) {
    const kind = kinds[i % kinds.length]
    const p = kind === 'login'
      ? login(app)
      : me(app, kind === 'cached' ? cached : kind === 'cold' ? cold[i % cold.length] : generateToken())
    inflight.push(p.then((res) => ({ kind, res })))
    if (i === 60) await proxy.down()
    if (i % 10 === 0) await sleep(1)
  }
  const answers = await Promise.all(inflight)
  const statuses = new Set(answers.map((a) => a.res.statusCode))
  t.notOk(statuses.has(500), 'no 500')
  t.ok([...statuses].every((s) => s === 200 || s === 401 || s === 503), `only 200, 401, 503: ${[...statuses].join(', ')}`)
  t.ok(answers.filter((a) => a.kind === 'unknown').every((a) => a.res.statusCode !== 200), 'an unknown token never passes')
  t.ok(answers.filter((a) => a.kind === 'cold').every((a) => a.res.statusCode !== 401), 'a valid token is never called invalid')
  t.ok(answers.filter((a) => a.kind === 'cached').every((a) => a.res.statusCode === 200), 'a cached token still passes')
  t.ok(answers.some((a) => a.res.statusCode === 503), 'the outage was seen')
  for (const a of answers) {
    if (a.res.statusCode === 503) assertUnavailable(t, a.res, `${a.kind} during the outage`)
    t.notMatch(a.res.body, /ECONNREFUSED|ECONNRESET|CONNECTION_|postgres/i, 'no internal error message')
  }

  // During the outage: unknown and cold tokens, and logins, are 503; a cached token passes.
  assertUnavailable(t, await me(app, generateToken()), 'unknown token')
  assertUnavailable(t, await me(app, cold[cold.length - 1]), 'cold token')
  assertUnavailable(t, await login(app), 'login')
  t.equal((await me(app, cached)).statusCode, 200, 'cached token')

  // No half-written token rows: exactly the tokens that logins returned were added.
  await proxy.up()
  const issued = answers.filter((a) => a.kind === 'login' && a.res.statusCode === 200).map((a) => a.res.json().token as string)
  const recoveredIn = await recovery(app, cold)
  t.ok(recoveredIn < 2000, `a cold token passes again ${recoveredIn} ms after the proxy came back (< 2 s), no restart`)
  const after = await tokenRows(direct, userId)
  t.equal(after.length, before.length + issued.length, `token rows: ${before.length} before + ${issued.length} logins that answered 200`)
  for (const token of issued) t.equal((await me(app, token)).statusCode, 200, 'a token a login returned during the cut works')
  const res = await login(app)
  t.equal(res.statusCode, 200, 'logins work again')
  t.equal((await me(app, res.json().token)).statusCode, 200)
  t.equal((await me(app, generateToken())).statusCode, 401, 'unknown tokens are 401 again')
})

for (const end of ['heal', 'reset'] as const) {
  t.test(`a blackhole (connections accepted, never answered): 503 within queryTimeout; the partition ends with a ${end}, no restart`, async (t) => {
    if (!requirePostgres(t)) return
    const { app, proxy, direct, userId } = await setup(t)
    const svc = app.tokenAuth.service!
    const cached = (await svc.issueToken(userId)).token
    t.equal((await me(app, cached)).statusCode, 200)
    const cold = await Promise.all(Array.from({ length: 20 }, async () => (await svc.issueToken(userId)).token))
    const before = await tokenRows(direct, userId)

    await proxy.blackhole()
    const started = Date.now()
    const answers = await Promise.all([
      ...cold.slice(0, 10).map(async (token) => await me(app, token)),
      ...Array.from({ length: 10 }, async () => await me(app, generateToken()))
    ])
    const took = Date.now() - started
    for (const res of answers) assertUnavailable(t, res, 'a token needing the database')
    t.ok(took < QUERY_TIMEOUT + 1000, `all answered in ${took} ms (queryTimeout ${QUERY_TIMEOUT} ms)`)
    t.equal((await me(app, cached)).statusCode, 200, 'a cached token still passes')

    // A login needs the database, and the login route has no deadline of its own: on a connection
    // that silently stopped answering it waits until the partition ends (a new connection would
    // give up after createDatabase's connectTimeout). Whatever happens, it is never a 500.
    const pendingLogin = login(app)
    await sleep(300)

    if (end === 'heal') proxy.heal()
    else proxy.resetAll()
    const late = await pendingLogin
    t.ok(late.statusCode === 200 || late.statusCode === 503, `the login started during the partition: ${late.statusCode} (200 or 503)`)
    if (late.statusCode === 503) assertUnavailable(t, late, 'login during the partition')
    const delivered = late.statusCode === 200 ? 1 : 0
    const recoveredIn = await recovery(app, cold.slice(10))
    t.ok(recoveredIn < 2000, `a cold token passes again ${recoveredIn} ms after the partition ended (< 2 s)`)
    const ok = await login(app)
    t.equal(ok.statusCode, 200, 'logins work again')
    t.equal((await me(app, ok.json().token)).statusCode, 200)
    t.equal((await tokenRows(direct, userId)).length, before.length + delivered + 1, 'a failed login left no token row')
  })
}

t.test('the process survived: no uncaught exception, no unhandled rejection', async (t) => {
  await sleep(200)
  t.same(crashes.map(String), [])
})
