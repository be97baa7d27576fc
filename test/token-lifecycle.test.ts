// The token lifecycle an app's users see over HTTP: self-service tokens (GET/POST /tokens, DELETE
// /tokens/:id), the scope that guards them, the password change that ends the other sessions, the
// per-user token limit, the longest lifetime, sliding expiry, the housekeeping rounds, the audit trail
// (diagnostics channel and table) and the metrics.
import t, { type Test } from 'tap'
import diagnostics from 'node:diagnostics_channel'
import Fastify from 'fastify'
import tokenAuth, { SecretTokenAuthProvider } from '../lib/index.js'
import { EVENTS_CHANNEL, type TokenAuthEvent } from '../lib/events.js'
import { MAINTENANCE_LOCK_KEY } from '../lib/store/maintenance.js'
import { freshDatabase, query, requirePostgres } from './helpers/db.js'
import { bearer } from './helpers/http.js'
import { call, login, PASSWORD, tokenApps, user } from './helpers/token-app.js'

const { database, url } = await freshDatabase(t)
const { build } = tokenApps(t, database)

/** Every event published on the diagnostics channel while `t` runs. */
function recordEvents (t: Test): TokenAuthEvent[] {
  const seen: TokenAuthEvent[] = []
  const listener = (event: unknown): void => { seen.push(event as TokenAuthEvent) }
  diagnostics.subscribe(EVENTS_CHANNEL, listener)
  t.teardown(() => { diagnostics.unsubscribe(EVENTS_CHANNEL, listener) })
  return seen
}

t.test('self-service: list, create a narrower token, revoke one of yours, never another\'s', async (t) => {
  const app = await build()
  const alice = (await user(app)).name
  const bob = (await user(app)).name
  const a = await login(app, alice)

  const first = await call(app, a, 'GET', '/tokens')
  t.equal(first.statusCode, 200)
  const [own] = first.json()
  t.same(Object.keys(own).sort(), ['createdAt', 'current', 'expiresAt', 'hint', 'id', 'lastUsedAt', 'name', 'scopes'], 'no token and no hash in the list')
  t.match(own, { current: true, scopes: ['tokens'], expiresAt: null })
  t.ok(a.startsWith(own.hint), 'the hint is the visible start of the token')

  const made = await call(app, a, 'POST', '/tokens', { name: 'ci', scopes: [], expiresIn: 3600 })
  t.equal(made.statusCode, 201)
  t.equal(made.headers['cache-control'], 'no-store')
  const b = made.json()
  t.match(b, { token: /^tat_/, token_type: 'Bearer', name: 'ci', scopes: [], current: false })
  t.ok(Math.abs(Date.parse(b.expiresAt) - Date.now() - 3600_000) < 60_000, 'expires in an hour')
  t.equal((await call(app, b.token, 'GET', '/me')).statusCode, 200, 'the new token works')

  const listed = (await call(app, a, 'GET', '/tokens')).json()
  t.same(listed.map((x: { name: string, current: boolean }) => [x.name, x.current]), [[own.name, true], ['ci', false]])

  // The narrow token may not manage tokens, nor end the user's other sessions.
  for (const [method, path, body] of [['GET', '/tokens'], ['POST', '/tokens', {}], ['DELETE', `/tokens/${own.id}`], ['POST', '/logout/all']] as const) {
    const res = await call(app, b.token, method, path, body)
    t.equal(res.statusCode, 403, `${method} ${path} with the narrow token`)
    t.match(res.headers['www-authenticate'], /error="insufficient_scope"/)
    t.match(res.headers['www-authenticate'], /scope="tokens"/)
  }
  t.equal((await call(app, a, 'GET', '/me')).statusCode, 200, 'the login token survived')

  // No wider token than one's own.
  const wider = await call(app, a, 'POST', '/tokens', { scopes: ['admin'] })
  t.equal(wider.statusCode, 403)
  t.match(wider.json(), { code: 'FST_TOKEN_AUTH_INSUFFICIENT_SCOPE' })
  t.match(wider.headers['www-authenticate'], /scope="admin"/)

  // Bad bodies: 400 with Fastify's error body.
  for (const body of [{ expiresIn: 0 }, { expiresIn: 1.5 }, { scopes: 'tokens' }, { scopes: ['a b'] }, { name: 'a\u202eb' }, { extra: 1 }, { name: 'x'.repeat(201) }]) {
    const res = await call(app, a, 'POST', '/tokens', body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  }

  // Someone else's token is as unknown as a missing one.
  const bobs = await login(app, bob)
  const bobId = (await call(app, bobs, 'GET', '/tokens')).json()[0].id
  for (const id of [bobId, 99999999, 'abc', '1e3', '-1', '0']) {
    const res = await call(app, a, 'DELETE', `/tokens/${id}`)
    t.equal(res.statusCode, 404, `DELETE /tokens/${id}`)
    t.match(res.json(), { code: 'FST_TOKEN_AUTH_TOKEN_NOT_FOUND' })
  }
  t.equal((await call(app, bobs, 'GET', '/me')).statusCode, 200, 'bob\'s token still works')

  t.equal((await call(app, a, 'DELETE', `/tokens/${b.id}`)).statusCode, 204)
  t.equal((await call(app, b.token, 'GET', '/me')).statusCode, 401, 'the revoked token is refused at once')
  t.equal((await call(app, a, 'DELETE', `/tokens/${b.id}`)).statusCode, 404, 'and is gone')
})

t.test('manageScope: null lets any token of the user manage tokens; another name is honoured', async (t) => {
  const open = await build({}, { routes: { throttle: false, manageScope: null } })
  const name = (await user(open)).name
  const narrow = (await call(open, await login(open, name), 'POST', '/tokens', { name: 'narrow' })).json().token
  t.equal((await call(open, narrow, 'GET', '/tokens')).statusCode, 200)
  t.equal((await call(open, narrow, 'GET', '/tokens', undefined)).json().length, 2)

  const custom = await build({}, { routes: { throttle: false, manageScope: 'account' } })
  const token = await login(custom, name)
  t.same((await call(custom, token, 'GET', '/me')).json().scopes, ['account'])
  t.equal((await call(custom, token, 'GET', '/tokens')).statusCode, 200)
})

t.test('a secret token cannot manage store tokens (403), a missing one gets the challenge (401)', async (t) => {
  const app = await build({}, { provider: new SecretTokenAuthProvider({ tokens: ['a-static-secret-token-0123456789'] }) })
  t.equal((await call(app, 'a-static-secret-token-0123456789', 'GET', '/me')).statusCode, 200)
  for (const [method, path] of [['GET', '/tokens'], ['POST', '/logout']] as const) {
    const res = await call(app, 'a-static-secret-token-0123456789', method, path)
    t.equal(res.statusCode, 403, `${method} ${path}`)
  }
  const res = await app.inject({ url: '/tokens' })
  t.equal(res.statusCode, 401)
  t.match(res.headers['www-authenticate'], /^Bearer realm="api"$/)
})

t.test('password change: the other sessions end, this one stays, events say so without secrets', async (t) => {
  const seen = recordEvents(t)
  const app = await build()
  const name = (await user(app)).name
  const laptop = await login(app, name)
  const phone = await login(app, name)

  const wrong = await call(app, laptop, 'POST', '/password', { password: 'not it', newPassword: 'a new passphrase here' })
  t.equal(wrong.statusCode, 401)
  t.match(wrong.json(), { code: 'FST_TOKEN_AUTH_BAD_CREDENTIALS' })
  t.equal((await call(app, phone, 'GET', '/me')).statusCode, 200, 'a wrong current password changes nothing')

  const bad = await call(app, laptop, 'POST', '/password', { password: PASSWORD })
  t.equal(bad.statusCode, 400, 'newPassword is required')
  const weak = await call(app, laptop, 'POST', '/password', { password: PASSWORD, newPassword: 'a\u0000b' })
  t.equal(weak.statusCode, 400, 'a new password that breaks the rules')
  t.match(weak.json(), { code: 'FST_TOKEN_AUTH_BAD_REQUEST' })

  const ok = await call(app, laptop, 'POST', '/password', { password: PASSWORD, newPassword: 'a new passphrase here' })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { revoked: 1 })
  t.equal((await call(app, phone, 'GET', '/me')).statusCode, 401, 'the other token is revoked')
  t.equal((await call(app, laptop, 'GET', '/me')).statusCode, 200, 'the one the change was made with is kept')
  t.equal((await app.inject({ method: 'POST', url: '/login', payload: { username: name, password: PASSWORD } })).statusCode, 401, 'the old password is refused')
  await login(app, name, 'a new passphrase here')

  const types = seen.filter((e) => e.userId !== undefined || e.type.startsWith('login')).map((e) => e.type)
  t.match(types, ['user.created', 'token.issued', 'login.succeeded', 'token.issued', 'login.succeeded', 'login.failed', 'token.revoked', 'password.changed', 'login.failed', 'token.issued', 'login.succeeded'])
  const changed = seen.find((e) => e.type === 'password.changed')
  t.match(changed, { detail: { revoked: 1 } })
  const text = JSON.stringify(seen)
  for (const secret of [laptop, phone, PASSWORD, 'a new passphrase here', laptop.slice(12)]) t.notOk(text.includes(secret), 'no secret in any event')
  t.match(seen.find((e) => e.type === 'login.failed'), { ip: '127.0.0.1', detail: { account: name, why: 'bad credentials' } })
})

t.test('revokeOnPasswordChange: false keeps the other sessions', async (t) => {
  const app = await build({ revokeOnPasswordChange: false })
  const name = (await user(app)).name
  const one = await login(app, name)
  const two = await login(app, name)
  t.same((await call(app, one, 'POST', '/password', { password: PASSWORD, newPassword: 'another passphrase' })).json(), { revoked: 0 })
  t.equal((await call(app, two, 'GET', '/me')).statusCode, 200)
})

t.test('maxTokensPerUser: refuse by default (403), or revoke the oldest', async (t) => {
  const refuse = await build({ maxTokensPerUser: 2 })
  const name = (await user(refuse)).name
  const first = await login(refuse, name)
  await login(refuse, name)
  const third = await refuse.inject({ method: 'POST', url: '/login', payload: { username: name, password: PASSWORD } })
  t.equal(third.statusCode, 403)
  t.match(third.json(), { code: 'FST_TOKEN_AUTH_TOKEN_LIMIT', message: /revoke one first/ })
  const viaRoute = await call(refuse, first, 'POST', '/tokens', {})
  t.equal(viaRoute.statusCode, 403)
  t.match(viaRoute.json(), { code: 'FST_TOKEN_AUTH_TOKEN_LIMIT' })
  // Expired tokens do not count.
  await query(database, `update token_auth_tokens set expires_at = now() - interval '1 second' where id = (select min(t.id) from token_auth_tokens t join token_auth_users u on u.id = t.user_id where u.username = '${name}')`)
  t.equal((await refuse.inject({ method: 'POST', url: '/login', payload: { username: name, password: PASSWORD } })).statusCode, 200, 'an expired token makes room')

  const rotate = await build({ maxTokensPerUser: 2, onTokenLimit: 'revokeOldest' })
  const other = (await user(rotate)).name
  const tokens = [await login(rotate, other), await login(rotate, other), await login(rotate, other)]
  t.same(await Promise.all(tokens.map(async (tok) => (await call(rotate, tok, 'GET', '/me')).statusCode)), [401, 200, 200], 'the oldest was revoked')

  // Concurrent logins cannot exceed the limit.
  const racer = (await user(rotate)).name
  await Promise.all(Array.from({ length: 8 }, () => login(rotate, racer)))
  const [{ n }] = await query<{ n: number }>(database, `select count(*)::int as n from token_auth_tokens t join token_auth_users u on u.id = t.user_id where u.username = '${racer}'`)
  t.equal(n, 2)
})

t.test('maxTokenLifetime: the default lifetime and the longest one may ask for', async (t) => {
  const app = await build({ maxTokenLifetime: 600 })
  const name = (await user(app)).name
  const res = await app.inject({ method: 'POST', url: '/login', payload: { username: name, password: PASSWORD } })
  t.equal(res.json().expires_in, 600, 'login says when its token ends')
  const token = res.json().token
  const tooLong = await call(app, token, 'POST', '/tokens', { expiresIn: 601 })
  t.equal(tooLong.statusCode, 400)
  t.match(tooLong.json().message, /at most 600 seconds/)
  t.equal((await call(app, token, 'POST', '/tokens', { expiresIn: 60 })).statusCode, 201)
  const made = (await call(app, token, 'POST', '/tokens', {})).json()
  t.ok(Math.abs(Date.parse(made.expiresAt) - Date.now() - 600_000) < 60_000, 'no lifetime asked: the maximum')
})

t.test('slidingExpiry: a used token lives on, capped by maxTokenLifetime; an unused one ends', async (t) => {
  const opts = { drizzle: { lastUsedInterval: 1 } }
  const app = await build({ slidingExpiry: 3600, maxTokenLifetime: 7200 }, opts)
  const name = (await user(app)).name
  const token = await login(app, name)
  const short = (await call(app, token, 'POST', '/tokens', { name: 'short', expiresIn: 60 })).json()
  const idle = (await call(app, token, 'POST', '/tokens', { name: 'idle', expiresIn: 60 })).json()
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal((await call(app, short.token, 'GET', '/me')).statusCode, 200)
  await app.close() // writes the pending last_used_at (and expiry) updates

  const again = await build({ slidingExpiry: 3600, maxTokenLifetime: 7200 }, opts)
  const list = (await call(again, token, 'GET', '/tokens')).json() as Array<{ name: string, expiresAt: string, lastUsedAt: string | null }>
  const byName = Object.fromEntries(list.map((x) => [x.name, x]))
  t.ok(Math.abs(Date.parse(byName.short.expiresAt) - Date.now() - 3600_000) < 60_000, 'used: now + the sliding window')
  t.ok(byName.short.lastUsedAt !== null)
  t.equal(byName.idle.expiresAt, idle.expiresAt, 'unused: unchanged')

  // Never past creation + maxTokenLifetime.
  await query(database, `update token_auth_tokens set created_at = now() - interval '7000 seconds', expires_at = now() + interval '10 seconds' where id = ${Number(short.id)}`)
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal((await call(again, short.token, 'GET', '/me')).statusCode, 200)
  await again.close()
  const [row] = await query<{ left: number }>(database, `select extract(epoch from expires_at - now())::int as left from token_auth_tokens where id = ${Number(short.id)}`)
  t.ok(row.left <= 200 && row.left > 100, `capped at creation + 7200 s (${row.left} s left)`)

  await t.rejects(async () => { await Fastify().register(tokenAuth, { database, service: { slidingExpiry: 60 }, drizzle: { lastUsedInterval: false } }).ready() },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'service.slidingExpiry' })
})

t.test('maintenance: prunes expired tokens, sweeps the throttle, deletes old events; one process at a time', async (t) => {
  const seen = recordEvents(t)
  const app = await build({ events: { table: true, retention: 3600 } })
  const name = (await user(app)).name
  const token = await login(app, name)
  const doomed = (await call(app, token, 'POST', '/tokens', { name: 'doomed', expiresIn: 60 })).json()
  await query(database, `update token_auth_tokens set expires_at = now() - interval '1 second' where id = ${Number(doomed.id)}`)
  await app.tokenAuth.service!.events.flush()
  await query(database, 'insert into token_auth_events (type, at) values (\'login.failed\', now() - interval \'2 hours\')')

  const [{ expired }] = await query<{ expired: number }>(database, 'select count(*)::int as expired from token_auth_tokens where expires_at <= now()')
  t.ok(expired >= 1)
  const done = await app.tokenAuth.maintenance!.run()
  t.match(done, { pruned: expired, events: 1 })
  t.equal((await call(app, doomed.token, 'GET', '/me')).statusCode, 401)
  t.match(seen.filter((e) => e.type === 'token.expired' && e.tokenId === doomed.id), [{ userId: /^\d+$/ }], 'a token.expired event')
  t.equal(app.tokenAuth.metrics().tokens.pruned, expired)

  await app.tokenAuth.service!.events.flush()
  const rows = await query<{ type: string, token_id: number | null, detail: Record<string, unknown> }>(database,
    `select type, token_id, detail from token_auth_events where user_id = (select id::text from token_auth_users where username = '${name}') order by id`)
  t.same(rows.map((r) => r.type), ['user.created', 'token.issued', 'login.succeeded', 'token.issued', 'token.expired'], 'the audit trail, in the table')
  t.match(rows[3], { token_id: doomed.id, detail: { name: 'doomed', scopes: [] } })
  t.notOk(JSON.stringify(rows).includes(doomed.token.slice(4)), 'no token in the table')
  const [{ old }] = await query<{ old: number }>(database, 'select count(*)::int as old from token_auth_events where at < now() - interval \'1 hour\'')
  t.equal(old, 0, 'events past their retention are gone')

  if (!requirePostgres(t)) return
  // Another process holding the round's lock: this one skips its round.
  const postgres = (await import('postgres')).default
  const other = postgres(url!, { max: 1 })
  t.teardown(() => other.end())
  await other.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MAINTENANCE_LOCK_KEY.toString()}::bigint)`
    t.equal(await app.tokenAuth.maintenance!.run(), null, 'skipped while another process runs it')
  })
  t.match(await app.tokenAuth.maintenance!.run(), { pruned: 0 })
})

t.test('maintenance: false, and the interval is checked', async (t) => {
  const app = await build({}, { maintenance: false })
  t.equal(app.tokenAuth.maintenance, null)
  await t.rejects(async () => { await Fastify().register(tokenAuth, { database, maintenance: { interval: 10 } }).ready() },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'maintenance.interval' })
})

t.test('metrics: logins, requests and lookups, counted', async (t) => {
  const app = await build()
  const name = (await user(app)).name
  const token = await login(app, name)
  await app.inject({ method: 'POST', url: '/login', payload: { username: name, password: 'wrong' } })
  await call(app, token, 'GET', '/me')
  await call(app, token, 'GET', '/me')
  await app.inject({ url: '/me' })
  await app.inject({ url: '/me', headers: bearer('tat_unknown') })
  const m = app.tokenAuth.metrics()
  t.match(m, { logins: { succeeded: 1, failed: 1, throttled: 0 }, requests: { accepted: 2, missing: 1 }, tokens: { issued: 1 } })
  t.ok(m.lookups.cacheHits >= 1, 'the second request came from the cache')
  m.logins.succeeded = 99
  t.equal(app.tokenAuth.metrics().logins.succeeded, 1, 'a snapshot, not the live counters')
})
