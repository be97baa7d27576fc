// The database provider end to end: tokens issued by the service resolve through the plugin; bad
// checksums never reach the database; expiry, inactive users and revocation (in this process and,
// through NOTIFY, in another) are refused; last_used_at is written in batches.
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { createDatabase } from '../lib/store/database.js'
import { generateToken } from '../lib/store/token-format.js'
import { TokenService } from '../lib/store/service.js'
import { countingDb, freshDatabase, query, requirePostgres } from './helpers/db.js'
import { bearer } from './helpers/http.js'

async function appOn (t: Test, opts: TokenAuthOptions): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, { ...opts, routes: false })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  await app.ready()
  t.teardown(() => app.close())
  return app
}

t.test('an issued token resolves to a safe user object', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('Alice', 'correct horse battery')
  const issued = await service.issueToken(user.id, { name: 'phone', scopes: ['read'] })
  const app = await appOn(t, { database })
  const res = await app.inject({ url: '/me', headers: bearer(issued.token) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { user: { id: user.id, username: 'alice', tokenId: issued.id, scopes: ['read'] } })
  t.notMatch(res.body, /scrypt|password/i, 'no password hash in the user')
})

t.test('a token with a bad checksum or another prefix is refused without a query', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('bob', 'correct horse battery')
  const { token } = await service.issueToken(user.id)
  const { db, queries } = countingDb(database)
  const provider = new DrizzleTokenAuthProvider({ db, service })
  const app = await appOn(t, { provider })
  const last = token.at(-1) === 'a' ? 'b' : 'a'
  for (const bad of [token.slice(0, -1) + last, 'xyz' + token.slice(3), token + 'a', token.slice(0, -1), generateToken('other')]) {
    const res = await app.inject({ url: '/me', headers: bearer(bad) })
    t.equal(res.statusCode, 401, bad)
    t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  }
  t.same(queries, [], 'no query was made')
  const ok = await app.inject({ url: '/me', headers: bearer(token) })
  t.equal(ok.statusCode, 200)
  t.equal(queries.length, 1, 'the good token took one query')
})

t.test('the cache answers warm requests; the negative cache answers repeated unknown tokens', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('carol', 'correct horse battery')
  const { token } = await service.issueToken(user.id)
  const { db, queries } = countingDb(database)
  const app = await appOn(t, { provider: new DrizzleTokenAuthProvider({ db, service, lastUsedInterval: false }) })
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200)
  t.equal(queries.length, 1, 'five requests, one query')
  const unknown = generateToken()
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/me', headers: bearer(unknown) })).statusCode, 401)
  t.equal(queries.length, 2, 'five unknown-token requests, one query')
  // Concurrent cold requests for one token share a single lookup.
  const other = await service.issueToken(user.id)
  const answers = await Promise.all(Array.from({ length: 20 }, () => app.inject({ url: '/me', headers: bearer(other.token) })))
  t.same(answers.map((r) => r.statusCode), Array(20).fill(200))
  t.equal(queries.length, 3, 'twenty concurrent cold requests, one query')
})

t.test('cache off: every request asks the database', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('dave', 'correct horse battery')
  const { token } = await service.issueToken(user.id)
  const { db, queries } = countingDb(database)
  const app = await appOn(t, { provider: new DrizzleTokenAuthProvider({ db, service, cache: false, lastUsedInterval: false }) })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200)
  t.equal(queries.length, 3)
})

t.test('cold lookups of different tokens at once share queries, each answered for its own user', async (t) => {
  const { database, service } = await freshDatabase(t, { service: { maxTokensPerUser: false } })
  const users = await Promise.all(Array.from({ length: 30 }, async (_, i) => await service.createUser(`batch${i}`, 'correct horse battery')))
  const issued = await Promise.all(users.map(async (u) => await service.issueToken(u.id)))
  const { db, queries } = countingDb(database)
  const provider = new DrizzleTokenAuthProvider({ db, service, cache: false, lastUsedInterval: false })
  const app = await appOn(t, { provider })
  // 300 requests at once: 30 users' tokens ten times over, and 60 unknown well-formed tokens.
  const unknown = Array.from({ length: 60 }, () => generateToken())
  const asked = [...Array.from({ length: 10 }, () => issued.map((x, i) => ({ token: x.token, user: users[i] }))).flat(),
    ...unknown.map((token) => ({ token, user: undefined }))]
  const answers = await Promise.all(asked.map(async ({ token }) => await app.inject({ url: '/me', headers: bearer(token) })))
  asked.forEach(({ user }, i) => {
    const res = answers[i]
    if (user === undefined) t.equal(res.statusCode, 401, 'unknown token: 401')
    else t.same([res.statusCode, res.json().user?.id, res.json().user?.username], [200, user.id, user.username], `token of ${user.username}`)
  })
  const lookups = queries.filter((q) => q.includes('"token_auth_tokens"."token_hash"'))
  t.ok(lookups.length < 30, `300 cold requests, ${lookups.length} lookup queries`)
  t.ok(lookups.some((q) => /token_hash" = any\(/.test(q)), 'several tokens asked in one query (= any)')
  const m = service.metrics.lookups
  t.ok(m.batches > 0 && m.queries === lookups.length, `metrics: ${m.queries} queries, ${m.batches} of them batched`)
})

t.test('a batched lookup that fails answers 503 to every request in it, and the next batch works', async (t) => {
  const { database, service } = await freshDatabase(t, { service: { maxTokensPerUser: false } })
  const user = await service.createUser('batchfail', 'correct horse battery')
  const issued = await Promise.all(Array.from({ length: 10 }, async () => await service.issueToken(user.id)))
  const { db } = countingDb(database)
  const provider = new DrizzleTokenAuthProvider({ db, service, cache: false, lastUsedInterval: false })
  const app = await appOn(t, { provider })
  // The tokens table is away for a moment: every lookup of the batch fails, none is a 401 or a 200.
  await query(database, 'alter table token_auth_tokens rename to token_auth_tokens_away')
  const failed = await Promise.all(issued.map(async (x) => await app.inject({ url: '/me', headers: bearer(x.token) })))
  t.same(failed.map((r) => r.statusCode), Array(10).fill(503))
  await query(database, 'alter table token_auth_tokens_away rename to token_auth_tokens')
  const ok = await Promise.all(issued.map(async (x) => await app.inject({ url: '/me', headers: bearer(x.token) })))
  t.same(ok.map((r) => r.statusCode), Array(10).fill(200))
})

t.test('expired tokens are refused, even when cached', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('erin', 'correct horse battery')
  const { token, expiresAt } = await service.issueToken(user.id, { expiresIn: 1 })
  t.ok(expiresAt instanceof Date, 'expires_at is stored')
  const app = await appOn(t, { database })
  t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'valid before expiry (and now cached)')
  await sleep(expiresAt!.getTime() - Date.now() + 50)
  const res = await app.inject({ url: '/me', headers: bearer(token) })
  t.equal(res.statusCode, 401)
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  const never = await service.issueToken(user.id)
  const [row] = await query<{ expires_at: unknown }>(database, 'select expires_at from token_auth_tokens where id = $1', [never.id])
  t.equal(row.expires_at, null, 'tokens do not expire unless asked to')
})

t.test('an inactive user is refused even if a token row survived', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('frank', 'correct horse battery')
  const { token } = await service.issueToken(user.id)
  await query(database, 'update token_auth_users set active = false where id = $1', [user.id])
  const app = await appOn(t, { database })
  t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 401)
})

t.test('revocation in this process is immediate, cache on', async (t) => {
  const { database, service } = await freshDatabase(t)
  const app = await appOn(t, { database })
  const svc = app.tokenAuth.service!
  const user = await service.createUser('grace', 'correct horse battery')
  const a = await svc.issueToken(user.id)
  const b = await svc.issueToken(user.id)
  const c = await svc.issueToken(user.id)
  for (const tok of [a, b, c]) t.equal((await app.inject({ url: '/me', headers: bearer(tok.token) })).statusCode, 200)
  await svc.revokeToken(a.id)
  t.equal((await app.inject({ url: '/me', headers: bearer(a.token) })).statusCode, 401, 'revoked token refused at once')
  t.equal((await app.inject({ url: '/me', headers: bearer(b.token) })).statusCode, 200, 'others still work')
  await svc.deactivateUser('grace')
  t.equal((await app.inject({ url: '/me', headers: bearer(b.token) })).statusCode, 401, 'deactivation revokes')
  t.equal((await app.inject({ url: '/me', headers: bearer(c.token) })).statusCode, 401)
  const rows = await query(database, 'select id from token_auth_tokens where user_id = $1', [user.id])
  t.same(rows, [], 'no token rows left')
})

t.test('a token revoked through one instance is refused by another within a second (NOTIFY)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, service } = await freshDatabase(t)
  const user = await service.createUser('heidi', 'correct horse battery')
  const issued = await service.issueToken(user.id)
  const other = await service.issueToken(user.id)
  // Two app instances, each with its own pool and LISTEN connection, like two processes.
  const dbA = await createDatabase(url, { max: 2 })
  const dbB = await createDatabase(url, { max: 2 })
  t.teardown(async () => { await dbA.close(); await dbB.close() })
  const appA = await appOn(t, { database: dbA })
  const appB = await appOn(t, { database: dbB })
  for (const app of [appA, appB]) t.equal((await app.inject({ url: '/me', headers: bearer(issued.token) })).statusCode, 200, 'cached in both')
  await appA.tokenAuth.service!.revokeToken(issued.id)
  const revokedAt = Date.now()
  t.equal((await appA.inject({ url: '/me', headers: bearer(issued.token) })).statusCode, 401, 'refused at once where revoked')
  let status = 200
  while (Date.now() - revokedAt < 1000) {
    status = (await appB.inject({ url: '/me', headers: bearer(issued.token) })).statusCode
    if (status === 401) break
    await sleep(10)
  }
  t.equal(status, 401, `refused by the other instance after ${Date.now() - revokedAt} ms`)
  t.equal((await appB.inject({ url: '/me', headers: bearer(other.token) })).statusCode, 200, 'the other token still works there')
  // Revoke-all and prune travel the same way.
  await appA.tokenAuth.service!.revokeAllTokens(user.id)
  await sleep(300)
  t.equal((await appB.inject({ url: '/me', headers: bearer(other.token) })).statusCode, 401)
})

t.test('a database failure is 503 with Retry-After, never 401 or 200', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('ivan', 'correct horse battery')
  const cached = await service.issueToken(user.id)
  const cold = await service.issueToken(user.id)
  const app = await appOn(t, { database })
  t.equal((await app.inject({ url: '/me', headers: bearer(cached.token) })).statusCode, 200)
  await database.close() // the database goes away under the running app
  const res = await app.inject({ url: '/me', headers: bearer(cold.token) })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
  t.equal((await app.inject({ url: '/me', headers: bearer(cached.token) })).statusCode, 200, 'a cached token still passes')
  t.equal((await app.inject({ url: '/me', headers: bearer(generateToken()) })).statusCode, 503, 'an unknown token never passes')
})

t.test('last_used_at is written at most once per interval, in a batch, off the request path', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('judy', 'correct horse battery')
  const a = await service.issueToken(user.id)
  const b = await service.issueToken(user.id)
  const { db, queries } = countingDb(database)
  const provider = new DrizzleTokenAuthProvider({ db, service: new TokenService({ db }), lastUsedInterval: 60_000 })
  const app = await appOn(t, { provider })
  for (let i = 0; i < 10; i++) {
    t.equal((await app.inject({ url: '/me', headers: bearer(a.token) })).statusCode, 200)
    t.equal((await app.inject({ url: '/me', headers: bearer(b.token) })).statusCode, 200)
  }
  t.equal(queries.filter((q) => /^update/i.test(q)).length, 0, 'nothing written on the request path')
  const before = await query<{ n: number }>(database, 'select count(*)::int as n from token_auth_tokens where last_used_at is not null')
  t.equal(before[0].n, 0)
  t.equal(await provider.flushLastUsed(), 2, 'two tokens in one batch')
  t.equal(queries.filter((q) => /^update/i.test(q)).length, 1, 'one statement')
  const after = await query<{ n: number }>(database, 'select count(*)::int as n from token_auth_tokens where last_used_at is not null')
  t.equal(after[0].n, 2)
  for (let i = 0; i < 5; i++) await app.inject({ url: '/me', headers: bearer(a.token) })
  t.equal(await provider.flushLastUsed(), 0, 'not again within the interval')
})

t.test('options are checked when the provider is made', async (t) => {
  const { database } = await freshDatabase(t)
  const code = 'FST_TOKEN_AUTH_INVALID_OPTION'
  t.throws(() => new DrizzleTokenAuthProvider({} as never), { code, option: 'DrizzleTokenAuthProvider.db', message: /must be a Drizzle database/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, prefix: 'Bad-Prefix' }), { code, option: 'DrizzleTokenAuthProvider.prefix', message: /must be a token prefix/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, cache: { ttl: -1 } }), { code, option: 'DrizzleTokenAuthProvider.cache.ttl', message: /from 0 to 2147483647 \(milliseconds\), got -1/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, cache: { tll: 5 } as never }), { code, option: 'DrizzleTokenAuthProvider.cache.tll', message: /unknown option/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, lastUsedInterval: 0 }), { code, option: 'DrizzleTokenAuthProvider.lastUsedInterval', message: /from 1 to 2147483647/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, queryTimeout: 0 }), { code, option: 'DrizzleTokenAuthProvider.queryTimeout', message: /from 1 to 2147483647/ })
  t.throws(() => new DrizzleTokenAuthProvider({ db: database.db, queryTimeout: Infinity }), { code, option: 'DrizzleTokenAuthProvider.queryTimeout', message: /got Infinity/ })
})

t.test('a provider made on its own follows its service: prefix and NOTIFY channel', async (t) => {
  if (!requirePostgres(t)) return
  const { url } = await freshDatabase(t)
  const dbA = await createDatabase(url, { max: 2 })
  const dbB = await createDatabase(url, { max: 2 })
  t.teardown(async () => { await dbA.close(); await dbB.close() })
  const options = { prefix: 'acme', notifyChannel: 'acme_revoked', passwordParams: { ln: 10, r: 8, p: 1 } }
  const serviceA = new TokenService(dbA, options)
  const serviceB = new TokenService(dbB, options)
  const user = await serviceA.createUser('kate', 'correct horse battery')
  const issued = await serviceA.issueToken(user.id)
  t.match(issued.token, /^acme_/)
  const app = await appOn(t, { provider: new DrizzleTokenAuthProvider({ db: dbB.db, listen: dbB.listen, service: serviceB }) })
  t.equal((await app.inject({ url: '/me', headers: bearer(issued.token) })).statusCode, 200, 'the service prefix is the provider prefix')
  await serviceA.revokeToken(issued.id)
  let status = 200
  for (let i = 0; i < 100 && status === 200; i++) {
    await sleep(10)
    status = (await app.inject({ url: '/me', headers: bearer(issued.token) })).statusCode
  }
  t.equal(status, 401, 'the revocation arrived on the service channel')
})

t.test('a LISTEN connection that reconnects forgets the cache: revocations sent meanwhile were lost', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database, service } = await freshDatabase(t)
  const user = await service.createUser('leo', 'correct horse battery')
  const issued = await service.issueToken(user.id)
  const own = await createDatabase(url, { max: 2 })
  t.teardown(() => own.close())
  const app = await appOn(t, { database: own })
  t.equal((await app.inject({ url: '/me', headers: bearer(issued.token) })).statusCode, 200, 'cached')
  // Cut the LISTEN connection, then revoke while it is down: the NOTIFY reaches no one.
  const killed = await query<{ ok: boolean }>(database,
    "select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = current_database() and query ilike 'listen%'")
  t.ok(killed.length >= 1 && killed.every((r) => r.ok), 'the LISTEN backend was terminated')
  await query(database, "with d as (delete from token_auth_tokens where id = $1 returning token_hash) select pg_notify('token_auth_revoked', token_hash) from d", [issued.id])
  let status = 200
  for (let i = 0; i < 300 && status === 200; i++) {
    await sleep(10)
    status = (await app.inject({ url: '/me', headers: bearer(issued.token) })).statusCode
  }
  t.equal(status, 401, 'refused once the LISTEN is back, long before the cache TTL')
})
