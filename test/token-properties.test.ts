// Property tests (fast-check, 10,000 runs each) of the database provider: random strings, random
// well-formed tokens with valid checksums (unknown to the database) and near-misses of a real issued
// token (one character changed, truncated, extended, case-flipped) never resolve to a user. A string
// whose checksum fails never reaches the database (queries counted with a Drizzle logger).
import * as zlib from 'node:zlib'
import t from 'tap'
import fc from 'fast-check'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { BASE62_ALPHABET, TOKEN_CHECKSUM_LENGTH, TOKEN_RANDOM_LENGTH, checkTokenFormat } from '../lib/store/token-format.js'
import { countingDb, freshDatabase } from './helpers/db.js'

const RUNS = { numRuns: 10_000 }

/** The checksum the format uses: CRC32 of the random part, 6 base62 digits (independent re-implementation). */
function checksum (random: string): string {
  let n = zlib.crc32(random) >>> 0
  let out = ''
  for (let i = 0; i < TOKEN_CHECKSUM_LENGTH; i++) { out = BASE62_ALPHABET[n % 62] + out; n = Math.floor(n / 62) }
  return out
}

const base62 = fc.constantFrom(...BASE62_ALPHABET)
const wellFormed = fc.array(base62, { minLength: TOKEN_RANDOM_LENGTH, maxLength: TOKEN_RANDOM_LENGTH })
  .map((chars) => { const random = chars.join(''); return `tat_${random}${checksum(random)}` })

t.test('the database provider never accepts what it did not issue', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('alice', 'correct horse battery staple')
  const { token } = await service.issueToken(user.id)
  const { db, queries } = countingDb(database)
  // The negative cache is off, so every well-formed unknown token really is looked up.
  const provider = new DrizzleTokenAuthProvider({ db, service, lastUsedInterval: false, cache: { negativeTtl: 0 } })
  t.teardown(() => provider.close())
  t.same(await provider.getUser(token), { id: user.id, username: 'alice', tokenId: 1, scopes: [] }, 'the real token resolves')
  queries.length = 0

  await t.test('random strings: refused, without a query', async (t) => {
    const anyString = fc.oneof(
      fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme', maxLength: 60 }),
      fc.string({ minLength: 40, maxLength: 40 }).map((s) => 'tat_' + s),
      fc.array(base62, { minLength: 36, maxLength: 36 }).map((a) => 'tat_' + a.join('')) // right shape, random checksum
    )
    let checked = 0
    await fc.assert(fc.asyncProperty(anyString, async (s) => {
      if (checkTokenFormat(s, 'tat')) return true // a random checksum that happens to match: covered below
      checked++
      return (await provider.getUser(s)) === null
    }), RUNS)
    t.same(queries, [], `${checked} strings refused, none reached the database`)
  })

  await t.test('random well-formed tokens with valid checksums: looked up, unknown', async (t) => {
    const before = queries.length
    await fc.assert(fc.asyncProperty(wellFormed, async (s) => {
      if (!checkTokenFormat(s, 'tat')) return false
      return s === token || (await provider.getUser(s)) === null
    }), RUNS)
    t.ok(queries.length - before >= RUNS.numRuns - 10, `each was looked up in the database (${queries.length - before} queries)`)
  })

  await t.test('near-misses of the real token: refused', async (t) => {
    const position = fc.integer({ min: 0, max: token.length - 1 })
    const mutant = fc.oneof(
      // One character changed, to another base62 character or to anything.
      fc.tuple(position, fc.oneof(base62, fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })))
        .map(([i, c]) => token.slice(0, i) + c + token.slice(i + 1)),
      // Truncated.
      fc.integer({ min: 0, max: token.length - 1 }).map((n) => token.slice(0, n)),
      // Extended.
      fc.string({ minLength: 1, maxLength: 8 }).map((tail) => token + tail),
      fc.string({ minLength: 1, maxLength: 8 }).map((head) => head + token),
      // Case flipped, one character or all.
      position.map((i) => token.slice(0, i) + flipCase(token[i]) + token.slice(i + 1)),
      fc.constant(flipAll(token)),
      // Two characters swapped.
      fc.tuple(position, position).map(([i, j]) => swap(token, i, j))
    ).filter((s) => s !== token)
    let reachedDb = 0
    const before = queries.length
    await fc.assert(fc.asyncProperty(mutant, async (s) => {
      if (checkTokenFormat(s, 'tat')) reachedDb++
      return (await provider.getUser(s)) === null
    }), RUNS)
    t.equal(queries.length - before, reachedDb, `only the ${reachedDb} near-misses with a valid checksum were looked up`)
    t.ok(reachedDb < RUNS.numRuns / 100, 'the checksum stops almost all of them')
  })

  t.same(await provider.getUser(token), { id: user.id, username: 'alice', tokenId: 1, scopes: [] }, 'the real token still resolves')
})

function flipCase (c: string): string {
  const up = c.toUpperCase()
  return up === c ? c.toLowerCase() : up
}
function flipAll (s: string): string {
  return [...s].map(flipCase).join('')
}
function swap (s: string, i: number, j: number): string {
  const a = [...s]
  const x = a[i]
  a[i] = a[j]
  a[j] = x
  return a.join('')
}
