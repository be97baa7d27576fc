// POST /login, /logout and /logout/all on a real database (one fresh database for this file):
// answers, hostile bodies, what is stored, expiry, revocation, the guarded native-app flow, options.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type InjectOptions } from 'fastify'
import tokenAuth, { SecretTokenAuthProvider, errorCodes, type TokenAuthOptions } from '../lib/index.js'
import { defaultTokenName } from '../lib/routes/login.js'
import type { LoginRoutesOptions } from '../lib/routes/options.js'
import { UserInactiveError } from '../lib/store/errors.js'
import { createDatabase, type Database } from '../lib/store/database.js'
import { generateToken, hashToken } from '../lib/store/token-format.js'
import { FAST_PASSWORD_PARAMS, freshDatabase, requirePostgres } from './helpers/db.js'
import { bearer } from './helpers/http.js'

const { database, url } = await freshDatabase(t)

async function rows (db: Database, text: string): Promise<Array<Record<string, unknown>>> {
  if (db.sql !== undefined) return [...await db.sql.unsafe(text)] as Array<Record<string, unknown>>
  if (db.pglite !== undefined) return (await db.pglite.query<Record<string, unknown>>(text)).rows
  throw new Error('unknown database kind')
}

const APP_TOKEN = 'native-app-secret-0123456789'
const PASSWORD = 'correct horse battery staple'

async function build (routes: LoginRoutesOptions | false = {}, opts: Partial<TokenAuthOptions> = {}, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(server)
  await app.register(tokenAuth, {
    database,
    // A queue long enough for the 20 concurrent logins below (a flood's 503 is tested in kdf-queue.test.ts).
    service: { passwordParams: FAST_PASSWORD_PARAMS, passwordQueue: 100 },
    routes: routes === false ? false : { throttle: false, ...routes },
    ...opts
  })
  app.get('/me', { preHandler: app.auth }, async (request) => ({ user: request.user }))
  app.get('/read', { config: { tokenAuth: { scopes: ['read'] } } }, async () => ({ ok: true }))
  await app.ready()
  return app
}

const login = (app: FastifyInstance, body: unknown, extra: Partial<InjectOptions> = {}) =>
  app.inject({ method: 'POST', url: '/login', payload: body as InjectOptions['payload'], ...extra })
const me = (app: FastifyInstance, token: string) => app.inject({ url: '/me', headers: bearer(token) })

// Users shared by the tests: made once through a service with the same (fast) parameters.
const app0 = await build()
const service = app0.tokenAuth.service!
await service.createUser('alice', PASSWORD)
await service.createUser('bob', PASSWORD)
await service.deactivateUser('bob')
await service.createUser('carol', PASSWORD)
await app0.close()

/** Fastify's error body: exactly these four keys. */
function isErrorBody (t: Test, body: Record<string, unknown>, statusCode: number): void {
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'Fastify error body')
  t.equal(body.statusCode, statusCode)
}

t.test('login: 200 with a working token, no-store, and a new token every time', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const res = await login(app, { username: 'alice', password: PASSWORD })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers.pragma, 'no-cache')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['token', 'token_type'], 'no expires_in when tokens never expire')
  t.equal(body.token_type, 'Bearer')
  t.match(body.token, /^tat_[0-9A-Za-z]{36}$/)
  const who = await me(app, body.token)
  t.equal(who.statusCode, 200)
  t.match(who.json().user, { username: 'alice' })
  t.notOk('passwordHash' in who.json().user)

  // Usernames are case- and width-insensitive (NFKC + lower case).
  t.equal((await login(app, { username: 'ALICE', password: PASSWORD })).statusCode, 200)
  t.equal((await login(app, { username: 'ａｌｉｃｅ', password: PASSWORD })).statusCode, 200)

  const tokens = new Set<string>()
  for (let i = 0; i < 5; i++) tokens.add((await login(app, { username: 'alice', password: PASSWORD })).json().token)
  t.equal(tokens.size, 5, 'each login issues a distinct token')
  for (const token of tokens) t.equal((await me(app, token)).statusCode, 200)

  const concurrent = await Promise.all(Array.from({ length: 20 }, () => login(app, { username: 'carol', password: PASSWORD })))
  t.same(concurrent.map((r) => r.statusCode), Array(20).fill(200))
  t.equal(new Set(concurrent.map((r) => r.json().token)).size, 20, '20 concurrent logins, 20 distinct tokens')
})

t.test('the token name: body.name, else the User-Agent, else "login"', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  await app.tokenAuth.service!.createUser('namer', PASSWORD)
  t.equal((await login(app, { username: 'namer', password: PASSWORD, name: 'Pixel 8' })).statusCode, 200)
  t.equal((await login(app, { username: 'namer', password: PASSWORD }, { headers: { 'user-agent': '  MyApp/1.2 (iOS)  ' } })).statusCode, 200)
  t.equal((await login(app, { username: 'namer', password: PASSWORD, name: '  ' }, { headers: { 'user-agent': 'x'.repeat(300) } })).statusCode, 200)
  t.equal((await login(app, { username: 'namer', password: PASSWORD }, { headers: { 'user-agent': '' } })).statusCode, 200)
  const names = (await app.tokenAuth.service!.listTokens('namer')).map((tok) => tok.name)
  t.same(names, ['Pixel 8', 'MyApp/1.2 (iOS)', 'x'.repeat(200), 'login'])
})

t.test('wrong password, unknown user, inactive user: one answer', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const answers = await Promise.all([
    login(app, { username: 'alice', password: 'wrong' }),
    login(app, { username: 'nobody', password: PASSWORD }),
    login(app, { username: 'bob', password: PASSWORD }),
    login(app, { username: 'bob', password: 'wrong' })
  ])
  for (const res of answers) {
    t.equal(res.statusCode, 401)
    t.same(res.json(), {
      statusCode: 401,
      code: 'FST_TOKEN_AUTH_BAD_CREDENTIALS',
      error: 'Unauthorized',
      message: 'Invalid username or password'
    })
    t.equal(res.headers['www-authenticate'], undefined, 'not a Bearer challenge: the credentials were in the body')
    t.equal(res.headers['content-length'], answers[0].headers['content-length'])
  }
  t.equal(errorCodes.FST_TOKEN_AUTH_BAD_CREDENTIALS, (await import('../lib/errors.js')).FST_TOKEN_AUTH_BAD_CREDENTIALS)
})

t.test('hostile and malformed bodies: always a 4xx with Fastify\'s error body, never a 500', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const json = { 'content-type': 'application/json' }
  const cases: Array<[string, Partial<InjectOptions>, number, string?]> = [
    ['no body', {}, 400, 'FST_ERR_VALIDATION'],
    ['empty JSON body', { headers: json, payload: '' }, 400, 'FST_ERR_CTP_EMPTY_JSON_BODY'],
    ['empty object', { payload: {} }, 400, 'FST_ERR_VALIDATION'],
    ['missing password', { payload: { username: 'alice' } }, 400, 'FST_ERR_VALIDATION'],
    ['missing username', { payload: { password: PASSWORD } }, 400, 'FST_ERR_VALIDATION'],
    ['username is a number', { payload: { username: 123, password: PASSWORD } }, 400, 'FST_ERR_VALIDATION'],
    ['password is a number', { payload: { username: 'alice', password: 123 } }, 400, 'FST_ERR_VALIDATION'],
    ['password is true', { payload: { username: 'alice', password: true } }, 400, 'FST_ERR_VALIDATION'],
    ['password is null', { payload: { username: 'alice', password: null } }, 400, 'FST_ERR_VALIDATION'],
    ['username is an array', { payload: { username: ['alice'], password: PASSWORD } }, 400, 'FST_ERR_VALIDATION'],
    ['password is an object', { payload: { username: 'alice', password: { $ne: '' } } }, 400, 'FST_ERR_VALIDATION'],
    ['body is an array', { headers: json, payload: '[{"username":"alice","password":"x"}]' }, 400, 'FST_ERR_VALIDATION'],
    ['body is a string', { headers: json, payload: '"alice"' }, 400, 'FST_ERR_VALIDATION'],
    ['body is null', { headers: json, payload: 'null' }, 400, 'FST_ERR_VALIDATION'],
    ['body is a number', { headers: json, payload: '42' }, 400, 'FST_ERR_VALIDATION'],
    ['an extra property', { payload: { username: 'alice', password: PASSWORD, admin: true } }, 400, 'FST_ERR_VALIDATION'],
    ['a constructor key', { payload: { username: 'alice', password: PASSWORD, constructor: 'x' } }, 400, 'FST_ERR_VALIDATION'],
    ['__proto__ key', { headers: json, payload: `{"username":"alice","password":"${PASSWORD}","__proto__":{"admin":true}}` }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['constructor.prototype', { headers: json, payload: '{"username":"alice","password":"x","constructor":{"prototype":{"admin":true}}}' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['empty username', { payload: { username: '', password: PASSWORD } }, 400, 'FST_ERR_VALIDATION'],
    ['empty password', { payload: { username: 'alice', password: '' } }, 400, 'FST_ERR_VALIDATION'],
    ['username over 150', { payload: { username: 'a'.repeat(151), password: PASSWORD } }, 400, 'FST_ERR_VALIDATION'],
    ['password over 1024', { payload: { username: 'alice', password: 'p'.repeat(1025) } }, 400, 'FST_ERR_VALIDATION'],
    ['name over 200', { payload: { username: 'alice', password: PASSWORD, name: 'n'.repeat(201) } }, 400, 'FST_ERR_VALIDATION'],
    ['name with a newline', { payload: { username: 'alice', password: PASSWORD, name: 'a\nb' } }, 400, 'FST_ERR_VALIDATION'],
    ['name is a number', { payload: { username: 'alice', password: PASSWORD, name: 7 } }, 400, 'FST_ERR_VALIDATION'],
    ['invalid JSON', { headers: json, payload: '{"username": "alice", ' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['deeply nested JSON', { headers: json, payload: '['.repeat(8000) + ']'.repeat(8000) }, 400],
    ['text/plain', { headers: { 'content-type': 'text/plain' }, payload: 'username=alice&password=x' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['form encoded', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=alice&password=x' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['multipart', { headers: { 'content-type': 'multipart/form-data; boundary=x' }, payload: '--x--' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['a body over the limit', { headers: json, payload: JSON.stringify({ username: 'alice', password: 'p'.repeat(20_000) }) }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'],
    // Well-formed but not an account: the same 401 as any bad credentials, no more, no less.
    ['null byte in the username', { payload: { username: 'ali\u0000ce', password: PASSWORD } }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS'],
    ['null byte in the password', { payload: { username: 'alice', password: 'correct\u0000horse' } }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS'],
    ['SQL metacharacters', { payload: { username: "alice' OR '1'='1' --", password: "' OR 1=1; drop table token_auth_users; --" } }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS'],
    ['a LIKE pattern', { payload: { username: 'a%', password: PASSWORD } }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS'],
    ['non-UTF-8 bytes', { headers: json, payload: Buffer.concat([Buffer.from('{"username":"al'), Buffer.from([0xff, 0xfe]), Buffer.from(`ice","password":"${PASSWORD}"}`)]) }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS'],
    ['leading whitespace', { payload: { username: ' alice', password: PASSWORD } }, 401, 'FST_TOKEN_AUTH_BAD_CREDENTIALS']
  ]
  for (const [name, options, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url: '/login', ...options })
    t.equal(res.statusCode, status, `${name}: ${status}`)
    const body = res.json()
    isErrorBody(t, body, status)
    if (code !== undefined) t.equal(body.code, code, `${name}: ${code}`)
  }
  // The strict body is not a side effect of the app's Ajv options: an app coercing types gets the same.
  const coercing = await build({}, {}, { ajv: { customOptions: { coerceTypes: true, removeAdditional: 'all' } } })
  t.teardown(() => coercing.close())
  t.equal((await login(coercing, { username: 'alice', password: 123 })).statusCode, 400)
  t.equal((await login(coercing, { username: 'alice', password: PASSWORD, admin: true })).statusCode, 400)
  t.equal((await login(coercing, { username: 'alice', password: PASSWORD })).statusCode, 200)
})

t.test('the plain token appears nowhere in the database', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const res = await login(app, { username: 'alice', password: PASSWORD, name: 'scan me' })
  const token: string = res.json().token
  const dump = (await rows(database, 'select row_to_json(t)::text as row from token_auth_tokens t')).map((r) => r.row as string)
  t.ok(dump.some((row) => row.includes('scan me')), 'the row is there')
  const secret = token.slice(token.indexOf('_') + 1)
  for (const row of dump) {
    t.notOk(row.includes(token), 'no plain token')
    t.notOk(row.includes(secret.slice(4)), 'no hidden part of the token')
  }
  t.ok(dump.some((row) => row.includes(hashToken(token))), 'its SHA-256 is stored')
  const users = (await rows(database, 'select row_to_json(u)::text as row from token_auth_users u')).map((r) => r.row as string)
  t.notOk(users.some((row) => row.includes(PASSWORD)), 'no plain password')
})

t.test('tokenExpiresIn: expires_in, then the token is refused', async (t) => {
  const app = await build({ tokenExpiresIn: 1 })
  t.teardown(() => app.close())
  const res = await login(app, { username: 'alice', password: PASSWORD })
  t.equal(res.statusCode, 200)
  t.same(Object.keys(res.json()).sort(), ['expires_in', 'token', 'token_type'])
  t.equal(res.json().expires_in, 1)
  const token = res.json().token
  t.equal((await me(app, token)).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 1300))
  const after = await me(app, token)
  t.equal(after.statusCode, 401)
  t.equal(after.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.match(after.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('tokenScopes: the issued tokens carry them', async (t) => {
  const plain = await build()
  t.teardown(() => plain.close())
  const scoped = await build({ tokenScopes: ['read', 'read'] })
  t.teardown(() => scoped.close())
  const a = (await login(plain, { username: 'alice', password: PASSWORD })).json().token
  const b = (await login(scoped, { username: 'alice', password: PASSWORD })).json().token
  t.equal((await plain.inject({ url: '/read', headers: bearer(a) })).statusCode, 403)
  t.equal((await plain.inject({ url: '/read', headers: bearer(b) })).statusCode, 200)
  t.same((await me(plain, b)).json().user.scopes, ['read', 'tokens'], 'and the scope to manage its own tokens')
})

t.test('logout revokes the presented token only', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const a = (await login(app, { username: 'alice', password: PASSWORD })).json().token
  const b = (await login(app, { username: 'alice', password: PASSWORD })).json().token
  t.equal((await me(app, a)).statusCode, 200, 'cached now')
  const out = await app.inject({ method: 'POST', url: '/logout', headers: bearer(a) })
  t.equal(out.statusCode, 204)
  t.equal(out.body, '')
  const refused = await me(app, a)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.match(refused.headers['www-authenticate'], /error="invalid_token"/)
  t.equal((await me(app, b)).statusCode, 200, 'the other token of the user still works')
  t.equal((await app.inject({ method: 'POST', url: '/logout', headers: bearer(a) })).statusCode, 401, 'twice: the token is gone')
  t.equal((await rows(database, `select count(*)::int as n from token_auth_tokens where token_hash = '${hashToken(a)}'`))[0].n, 0)

  const none = await app.inject({ method: 'POST', url: '/logout' })
  t.equal(none.statusCode, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="api"')
  const malformed = await app.inject({ method: 'POST', url: '/logout', headers: { authorization: 'Bearer a b' } })
  t.equal(malformed.statusCode, 400)
  // A JSON body is allowed (and ignored).
  const withBody = await app.inject({ method: 'POST', url: '/logout', headers: bearer(b), payload: { everywhere: false } })
  t.equal(withBody.statusCode, 204)
})

t.test('logout/all revokes every token of the user, no one else\'s', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const tokens = []
  for (let i = 0; i < 3; i++) tokens.push((await login(app, { username: 'alice', password: PASSWORD })).json().token)
  const carol = (await login(app, { username: 'carol', password: PASSWORD })).json().token
  for (const token of tokens) t.equal((await me(app, token)).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(tokens[1]) })).statusCode, 204)
  for (const token of tokens) t.equal((await me(app, token)).statusCode, 401)
  t.equal((await me(app, carol)).statusCode, 200)
  t.same(await app.tokenAuth.service!.listTokens('alice'), [])
  t.equal((await login(app, { username: 'alice', password: PASSWORD })).statusCode, 200, 'logging in again works')
})

t.test('deactivating a user (through the service) revokes their tokens and refuses logins', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  await app.tokenAuth.service!.createUser('dave', PASSWORD)
  const token = (await login(app, { username: 'dave', password: PASSWORD })).json().token
  t.equal((await me(app, token)).statusCode, 200)
  await app.tokenAuth.service!.deactivateUser('dave')
  t.equal((await me(app, token)).statusCode, 401)
  const again = await login(app, { username: 'dave', password: PASSWORD })
  t.equal(again.statusCode, 401)
  t.equal(again.json().code, 'FST_TOKEN_AUTH_BAD_CREDENTIALS')
})

t.test('native-app flow: /login guarded by an app token, every other route on the database', async (t) => {
  const guard = new SecretTokenAuthProvider({ tokens: [APP_TOKEN] })
  const app = await build({ loginGuard: guard })
  t.teardown(() => app.close())
  const body = { username: 'alice', password: PASSWORD }

  const missing = await login(app, body)
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING')
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="api"')
  const unknown = await login(app, body, { headers: bearer('not-the-app-token') })
  t.equal(unknown.statusCode, 401)
  t.equal(unknown.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  // The guard is checked before the body is read: no password check, no parse.
  const unguardedGarbage = await login(app, 'garbage', { headers: { 'content-type': 'text/plain' } })
  t.equal(unguardedGarbage.statusCode, 401)

  const ok = await login(app, body, { headers: bearer(APP_TOKEN) })
  t.equal(ok.statusCode, 200)
  const userToken = ok.json().token
  t.equal((await me(app, userToken)).statusCode, 200)
  t.equal((await login(app, { username: 'alice', password: 'wrong' }, { headers: bearer(APP_TOKEN) })).statusCode, 401)

  // The app token opens /login only.
  const appOnMe = await me(app, APP_TOKEN)
  t.equal(appOnMe.statusCode, 401)
  t.equal(appOnMe.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal((await app.inject({ method: 'POST', url: '/logout', headers: bearer(APP_TOKEN) })).statusCode, 401)
  // And a user's token does not open /login.
  t.equal((await login(app, body, { headers: bearer(userToken) })).statusCode, 401)
})

t.test('/logout with a token from another provider (a static secret): 403, nothing revoked', async (t) => {
  // The secret carries the scope /logout/all asks for (routes.manageScope), so both reach the handler.
  const app = await build({}, {
    provider: new SecretTokenAuthProvider({ tokens: [{ token: 'service-secret', scopes: ['tokens'] }, 'bare-secret'] })
  })
  t.teardown(() => app.close())
  t.equal((await me(app, 'service-secret')).statusCode, 200, 'the secret works on protected routes')
  const unscoped = await app.inject({ method: 'POST', url: '/logout/all', headers: bearer('bare-secret') })
  t.equal(unscoped.statusCode, 403, 'without the scope, /logout/all is refused before the handler')
  t.equal(unscoped.json().code, 'FST_TOKEN_AUTH_INSUFFICIENT_SCOPE')
  const alice = (await login(app, { username: 'alice', password: PASSWORD })).json().token
  for (const url of ['/logout', '/logout/all']) {
    const res = await app.inject({ method: 'POST', url, headers: bearer('service-secret') })
    t.equal(res.statusCode, 403, url)
    t.equal(res.json().code, 'FST_TOKEN_AUTH_NOT_REVOCABLE')
    isErrorBody(t, res.json(), 403)
  }
  t.equal((await me(app, 'service-secret')).statusCode, 200)
  t.equal((await me(app, alice)).statusCode, 200)
})

t.test('routes are configurable, can be turned off, and follow the plugin\'s prefix', async (t) => {
  const custom = await build({ login: '/auth/token', logout: '/auth/revoke', logoutAll: false })
  t.teardown(() => custom.close())
  t.equal((await login(custom, { username: 'alice', password: PASSWORD })).statusCode, 404)
  const res = await custom.inject({ method: 'POST', url: '/auth/token', payload: { username: 'alice', password: PASSWORD } })
  t.equal(res.statusCode, 200)
  t.equal((await custom.inject({ method: 'POST', url: '/auth/revoke', headers: bearer(res.json().token) })).statusCode, 204)
  t.equal((await custom.inject({ method: 'POST', url: '/logout/all', headers: bearer(res.json().token) })).statusCode, 404)

  const noLogin = await build({ login: false })
  t.teardown(() => noLogin.close())
  t.equal((await login(noLogin, { username: 'alice', password: PASSWORD })).statusCode, 404)
  const token = (await noLogin.tokenAuth.service!.issueToken('alice')).token
  t.equal((await noLogin.inject({ method: 'POST', url: '/logout', headers: bearer(token) })).statusCode, 204)

  const none = await build(false)
  t.teardown(() => none.close())
  for (const url of ['/login', '/logout', '/logout/all']) t.equal((await none.inject({ method: 'POST', url })).statusCode, 404, url)

  const prefixed = Fastify()
  t.teardown(() => prefixed.close())
  await prefixed.register(async (api) => {
    await api.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes: { throttle: false } })
  }, { prefix: '/api' })
  t.equal((await prefixed.inject({ method: 'POST', url: '/api/login', payload: { username: 'alice', password: PASSWORD } })).statusCode, 200)
})

t.test('the routes do not change how the app parses other routes', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes: { throttle: false } })
  app.post('/echo', { config: { tokenAuth: false } }, async (request) => ({ body: request.body }))
  const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'text/plain' }, payload: 'hi' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { body: 'hi' })
})

t.test('a renamed user property (userProperty) still works for /logout/all', async (t) => {
  const app = await build({}, { userProperty: 'account' })
  t.teardown(() => app.close())
  const a = (await login(app, { username: 'carol', password: PASSWORD })).json().token
  const b = (await login(app, { username: 'carol', password: PASSWORD })).json().token
  t.equal((await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(a) })).statusCode, 204)
  t.equal((await me(app, b)).statusCode, 401)
})

t.test('the store fails: 503 with Retry-After and a generic message, never 500', async (t) => {
  const app = await build({}, { retryAfter: 7 })
  t.teardown(() => app.close())
  const token = (await login(app, { username: 'alice', password: PASSWORD })).json().token
  const svc = app.tokenAuth.service! as unknown as Record<string, unknown>
  const boom = async (): Promise<never> => { throw new Error('connect ECONNREFUSED 10.1.2.3:5432 secret-internal-detail') }
  for (const method of ['verifyCredentials', 'issueToken', 'revokeToken', 'revokeAllTokens']) {
    const original = svc[method]
    svc[method] = boom
    t.teardown(() => { svc[method] = original })
  }
  const answers = [
    await login(app, { username: 'alice', password: PASSWORD }),
    await app.inject({ method: 'POST', url: '/logout', headers: bearer(token) }),
    await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(token) })
  ]
  for (const res of answers) {
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '7')
    t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
    t.notMatch(res.body, /ECONNREFUSED|secret-internal/)
  }
  // verifyCredentials works but issuing fails.
  svc.verifyCredentials = Object.getPrototypeOf(svc).verifyCredentials
  const issuing = await login(app, { username: 'alice', password: PASSWORD })
  t.equal(issuing.statusCode, 503)
  t.equal(issuing.headers['retry-after'], '7')
})

t.test('the store does not answer: 503 after routes.timeout, and a token issued too late is revoked', async (t) => {
  const app = await build({ timeout: 150 })
  t.teardown(() => app.close())
  await app.tokenAuth.service!.createUser('slow', PASSWORD)
  const token = (await login(app, { username: 'slow', password: PASSWORD })).json().token
  const svc = app.tokenAuth.service! as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
  const proto = Object.getPrototypeOf(svc) as typeof svc
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  const hang = () => new Promise<never>(() => {})
  const restore = () => { for (const m of ['verifyCredentials', 'issueToken', 'revokeToken', 'revokeAllTokens']) delete svc[m] }
  t.teardown(restore)

  svc.verifyCredentials = hang
  svc.revokeToken = hang
  svc.revokeAllTokens = hang
  for (const res of [
    await login(app, { username: 'slow', password: PASSWORD }),
    await app.inject({ method: 'POST', url: '/logout', headers: bearer(token) }),
    await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(token) })
  ]) {
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '5')
    t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
  }
  restore()

  const before = (await app.tokenAuth.service!.listTokens('slow')).length
  svc.issueToken = async function (this: unknown, ...args: unknown[]) {
    await sleep(400)
    return await proto.issueToken.apply(this, args)
  }
  const late = await login(app, { username: 'slow', password: PASSWORD })
  t.equal(late.statusCode, 503, 'issuing took too long')
  await sleep(700)
  t.equal((await app.tokenAuth.service!.listTokens('slow')).length, before, 'the token committed after the 503 was revoked')
  restore()
  t.equal((await login(app, { username: 'slow', password: PASSWORD })).statusCode, 200)
})

t.test('a real outage: the database connection is gone', async (t) => {
  if (!requirePostgres(t)) return
  const own = await createDatabase(url, { max: 2 })
  const app = Fastify()
  await app.register(tokenAuth, { database: own, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes: { throttle: false } })
  t.teardown(() => app.close())
  t.equal((await login(app, { username: 'alice', password: PASSWORD })).statusCode, 200)
  await own.close()
  const res = await login(app, { username: 'alice', password: PASSWORD })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
})

t.test('logs carry neither passwords nor tokens', async (t) => {
  const lines: string[] = []
  const app = await build({}, {}, { logger: { level: 'trace', stream: { write (s: string) { lines.push(s) } } } })
  t.teardown(() => app.close())
  const token = (await login(app, { username: 'alice', password: PASSWORD })).json().token
  await login(app, { username: 'alice', password: 'hunter2-wrong' })
  await login(app, { username: 'alice', password: 123 })
  await me(app, token)
  await app.inject({ method: 'POST', url: '/logout', headers: bearer(token) })
  await me(app, token)
  const text = lines.join('')
  t.ok(text.includes('login refused'), 'the failed login is logged')
  for (const secret of [PASSWORD, 'hunter2-wrong', token, token.slice(4)]) t.notOk(text.includes(secret), 'no secret in the logs')
})

t.test('options are checked at registration, with clear messages', async (t) => {
  const cases: Array<[unknown, string, RegExp]> = [
    [{ login: 'login' }, 'routes.login', /option routes\.login must be a path starting with '\/' \(printable ASCII, no spaces\) or false, got "login"/],
    [{ logout: 5 }, 'routes.logout', /option routes\.logout must be a path/],
    [{ login: '/x', logout: '/x' }, 'routes.login', /options routes\.login, routes\.logout, routes\.logoutAll, routes\.tokens and routes\.password must differ, got \/x, \/x, \/logout\/all, \/tokens, \/password/],
    [{ loginPath: '/x' }, 'routes.loginPath', /unknown option routes\.loginPath \(known: routes\.login,/],
    [{ loginGuard: {} }, 'routes.loginGuard', /option routes\.loginGuard must be a provider/],
    [{ loginGuard: ['abc'] }, 'routes.loginGuard', /option routes\.loginGuard must be a provider/],
    [{ tokenExpiresIn: 0 }, 'routes.tokenExpiresIn', /option routes\.tokenExpiresIn must be an integer from 1 to 316224000 \(seconds\), got 0/],
    [{ tokenExpiresIn: 1.5 }, 'routes.tokenExpiresIn', /option routes\.tokenExpiresIn must be/],
    [{ tokenExpiresIn: '3600' }, 'routes.tokenExpiresIn', /option routes\.tokenExpiresIn must be/],
    [{ tokenScopes: 'read' }, 'routes.tokenScopes', /option routes\.tokenScopes must be an array of at most 64 scope tokens/],
    [{ tokenScopes: ['has space'] }, 'routes.tokenScopes[0]', /option routes\.tokenScopes\[0\] must be an RFC 6749 scope token/],
    [{ throttle: 'yes' }, 'routes.throttle', /option routes\.throttle must be false or \{ perAccountAndIp\?, perAccount\?, perIp\?, timeWindow\?, knownAddressTtl\?, refusalsPerSecond\?, store\?, allowList\?, delay\? \}/],
    [{ throttle: { perAccount: 0 } }, 'routes.throttle.perAccount', /option routes\.throttle\.perAccount must be an integer from 1 to 1000000, got 0/],
    [{ throttle: { perIp: -1 } }, 'routes.throttle.perIp', /option routes\.throttle\.perIp must be/],
    [{ throttle: { timeWindow: '15 minutes' } }, 'routes.throttle.timeWindow', /option routes\.throttle\.timeWindow must be an integer from 1 to 2147483647 \(milliseconds\)/],
    [{ throttle: { max: 5 } }, 'routes.throttle.max', /unknown option routes\.throttle\.max/],
    [{ securityScheme: '' }, 'routes.securityScheme', /option routes\.securityScheme must be the name of an OpenAPI security scheme, or false/],
    [{ timeout: 0 }, 'routes.timeout', /option routes\.timeout must be an integer from 1 to 2147483647 \(milliseconds\)/],
    [{ timeout: 3e9 }, 'routes.timeout', /option routes\.timeout must be an integer from 1 to 2147483647 \(milliseconds\), got 3000000000/],
    ['yes', 'routes', /option routes must be an object or false/]
  ]
  for (const [routes, option, message] of cases) {
    const app = Fastify()
    const given = structuredCloneSafe(routes)
    await t.rejects(async () => { await app.register(tokenAuth, { database, routes: routes as LoginRoutesOptions }).ready() },
      { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option, message }, JSON.stringify(routes))
    t.same(routes, given, 'the options object is not mutated')
    await app.close()
  }
})

function structuredCloneSafe (value: unknown): unknown {
  try { return structuredClone(value) } catch { return value }
}

t.test('the default token name', async (t) => {
  t.equal(defaultTokenName(undefined), 'login')
  t.equal(defaultTokenName('\u0085\u0000 '), 'login')
  t.equal(defaultTokenName('curl/8.5.0'), 'curl/8.5.0')
})

t.test('all three routes off: nothing registered', async (t) => {
  const app = await build({ login: false, logout: false, logoutAll: false })
  t.teardown(() => app.close())
  for (const url of ['/login', '/logout', '/logout/all']) t.equal((await app.inject({ method: 'POST', url })).statusCode, 404, url)
})

t.test('a user deactivated between the password check and the token: the same 401', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const svc = app.tokenAuth.service! as unknown as Record<string, unknown>
  svc.issueToken = async () => { throw new UserInactiveError('alice') }
  t.teardown(() => { delete svc.issueToken })
  const res = await login(app, { username: 'alice', password: PASSWORD })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_TOKEN_AUTH_BAD_CREDENTIALS')
})

t.test('/logout/all with a store-format token another provider resolved to a non-database user: 403', async (t) => {
  const lookalike = generateToken()
  const impostor = { getUser: (token: string) => token === lookalike ? { id: 'ext-1', username: 'external', scopes: ['tokens'] } : null }
  const app = await build({}, { provider: impostor })
  t.teardown(() => app.close())
  t.equal((await me(app, lookalike)).statusCode, 200)
  const res = await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(lookalike) })
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'FST_TOKEN_AUTH_NOT_REVOCABLE')
})
