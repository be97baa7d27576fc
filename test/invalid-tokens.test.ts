// Failed token lookups are limited per client address: past `invalidTokens.max` unknown tokens in its
// window, an address gets 429 with Retry-After, and the provider (the database) is not asked at all.
import t from 'tap'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { generateToken } from '../lib/store/token-format.js'
import { SecretTokenAuthProvider } from '../lib/index.js'
import { countingDb, freshDatabase } from './helpers/db.js'
import { appWith, bearer } from './helpers/http.js'

t.test('unknown tokens with valid checksums from one address: 429 past the limit, without a query', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('ann', 'pw')
  const good = (await service.issueToken(id)).token
  const { db, queries } = countingDb(database)
  const provider = new DrizzleTokenAuthProvider({ db, service, lastUsedInterval: false, cache: { negativeTtl: 0 } })
  const app = await appWith(t, { provider, invalidTokens: { max: 5, timeWindow: 800 } })
  app.get('/me', { preHandler: app.auth }, async (req) => req.user)
  const from = (remoteAddress: string, token: string) => app.inject({ url: '/me', headers: bearer(token), remoteAddress })
  for (let i = 0; i < 5; i++) t.equal((await from('10.3.3.3', generateToken())).statusCode, 401)
  t.equal(queries.length, 5, 'each made-up token cost a query')
  const blocked = await from('10.3.3.3', generateToken())
  t.equal(blocked.statusCode, 429)
  t.same(blocked.json(), { statusCode: 429, code: 'FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS', error: 'Too Many Requests', message: 'Too many invalid tokens from this address, retry later' })
  t.match(blocked.headers['retry-after'], /^[1-9]\d*$/)
  for (let i = 0; i < 20; i++) await from('10.3.3.3', generateToken())
  t.equal(queries.length, 5, 'no query for an address over the limit')
  t.equal((await from('10.3.3.3', good)).statusCode, 429, 'the address is refused whatever it sends (its tokens cannot be told apart without a query)')
  t.equal((await from('10.3.3.4', good)).statusCode, 200, 'another address is not affected')
  t.equal((await from('2001:db8:9:9::1', generateToken())).statusCode, 401)
  await new Promise((resolve) => setTimeout(resolve, 900))
  t.equal((await from('10.3.3.3', good)).statusCode, 200, 'the window ended')
})

t.test('on by default (100 a minute), for any provider; missing or malformed credentials do not count', async (t) => {
  const app = await appWith(t, { provider: new SecretTokenAuthProvider({ tokens: ['right'] }) })
  app.get('/p', { preHandler: app.auth }, async () => 'in')
  for (let i = 0; i < 100; i++) await app.inject({ url: '/p', headers: { authorization: 'Bearer ' + 'x'.repeat(i % 5 + 1) } })
  for (let i = 0; i < 20; i++) t.equal((await app.inject({ url: '/p', headers: { authorization: 'Bearer a b' } })).statusCode, 400)
  t.equal((await app.inject({ url: '/p', headers: bearer('nope') })).statusCode, 429, 'the 101st unknown token')
  const off = await appWith(t, { provider: new SecretTokenAuthProvider({ tokens: ['right'] }), invalidTokens: false })
  off.get('/p', { preHandler: off.auth }, async () => 'in')
  for (let i = 0; i < 150; i++) await off.inject({ url: '/p', headers: bearer('nope') })
  t.equal((await off.inject({ url: '/p', headers: bearer('nope') })).statusCode, 401, 'invalidTokens: false')
  await t.rejects(appWith(t, { provider: new SecretTokenAuthProvider({ tokens: ['right'] }), invalidTokens: { max: 0 } }),
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'invalidTokens.max' })
})
