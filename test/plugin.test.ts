// The plugin as an app sees it: where fastify.auth goes, per-route config, scopes, provider failures,
// chains, custom providers, options validation, logging, decorator names and lifecycle.
import t from 'tap'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import tokenAuth, {
  ChainTokenAuthProvider, SecretTokenAuthProvider, TokenAuthUnavailableError,
  type TokenAuthOptions, type TokenAuthProvider, type TokenAuthUser
} from '../lib/index.js'
import { bearer, LEVEL, logCapture } from './helpers/http.js'

const TOKEN = 'good-token'
const WRITER = 'writer-token'
const NONE = 'Bearer realm="api"'
const secret = () => new SecretTokenAuthProvider({
  tokens: [TOKEN, { token: WRITER, username: 'writer', scopes: ['read', 'write'] }]
})

const INFO = LEVEL.info
const ERROR = LEVEL.error

async function build (opts: Partial<TokenAuthOptions> = {}, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(server)
  await app.register(tokenAuth, { provider: secret(), ...opts })
  return app
}

t.test('fastify.auth as preHandler and as onRequest', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  app.get('/pre', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  app.get('/on', { onRequest: app.auth }, async (req) => ({ user: req.user }))
  app.get('/both', { onRequest: [app.auth], preHandler: [app.auth] }, async (req) => ({ user: req.user }))
  for (const url of ['/pre', '/on', '/both']) {
    const ok = await app.inject({ url, headers: bearer(TOKEN) })
    t.equal(ok.statusCode, 200, `${url}: valid token`)
    t.same(ok.json(), { user: { id: 'secret_token_user', username: 'secret_token_user', scopes: [] } })
    const no = await app.inject({ url })
    t.equal(no.statusCode, 401, `${url}: no token`)
    t.equal(no.headers['www-authenticate'], NONE)
  }
})

t.test('open routes: request.user is null without a good token, and nothing is rejected', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  app.get('/open', async (req) => ({ user: req.user }))
  t.same((await app.inject({ url: '/open' })).json(), { user: null }, 'no header')
  const unknown = await app.inject({ url: '/open', headers: bearer('nope') })
  t.equal(unknown.statusCode, 200)
  t.same(unknown.json(), { user: null }, 'unknown token')
  t.same((await app.inject({ url: '/open', headers: { authorization: 'Bearer a b' } })).json(), { user: null }, 'malformed')
  t.same((await app.inject({ url: '/open', headers: bearer(TOKEN) })).json().user.username, 'secret_token_user',
    'a good token still resolves (optional authentication)')
})

t.test('config.tokenAuth: false skips resolution, and fastify.auth there still refuses', async (t) => {
  let calls = 0
  const provider: TokenAuthProvider = { getUser (token) { calls++; return token === TOKEN ? { id: 1, username: 'u' } : null } }
  const app = await build({ provider })
  t.teardown(() => app.close())
  app.get('/skip', { config: { tokenAuth: false } }, async (req) => ({ user: req.user }))
  app.get('/skip-guarded', { config: { tokenAuth: false }, preHandler: app.auth }, async () => 'never')
  const res = await app.inject({ url: '/skip', headers: bearer(TOKEN) })
  t.same(res.json(), { user: null })
  t.equal(calls, 0, 'the provider was not asked')
  const guarded = await app.inject({ url: '/skip-guarded', headers: bearer(TOKEN) })
  t.equal(guarded.statusCode, 401)
  t.equal(guarded.headers['www-authenticate'], NONE)
  t.equal(guarded.json().code, 'FST_TOKEN_AUTH_MISSING')
  t.equal(calls, 0)
})

t.test('bad route config is refused when the route is declared', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const code = 'FST_TOKEN_AUTH_INVALID_OPTION'
  t.throws(() => app.get('/x', { config: { tokenAuth: 'yes' as never } }, async () => 'x'),
    { code, option: 'config.tokenAuth', message: 'fastify-token-auth: GET /x: option config.tokenAuth must be false or { scopes, provider }, got "yes"' })
  t.throws(() => app.get('/y', { config: { tokenAuth: { scopes: ['has space'] } } }, async () => 'y'),
    { code, option: 'config.tokenAuth.scopes[0]', message: /GET \/y: option config\.tokenAuth\.scopes\[0\] must be an RFC 6749 scope token, got "has space"/ })
  t.throws(() => app.get('/z', { config: { tokenAuth: { scopes: 'write' as never } } }, async () => 'z'),
    { code, option: 'config.tokenAuth.scopes', message: /GET \/z: option config\.tokenAuth\.scopes must be an array of RFC 6749 scope tokens/ })
  // A misspelt key must not leave the route open.
  t.throws(() => app.get('/v', { config: { tokenAuth: { scope: ['admin'] } as never } }, async () => 'v'),
    { code, option: 'config.tokenAuth.scope', message: /GET \/v: unknown option config\.tokenAuth\.scope \(known: config\.tokenAuth\.scopes, config\.tokenAuth\.provider\)/ })
  t.throws(() => app.get('/w', { config: { tokenAuth: { provider: {} as never } } }, async () => 'w'),
    { code, option: 'config.tokenAuth.provider', message: /GET \/w: option config\.tokenAuth\.provider must be a provider \(an object with a getUser\(token, request\) method\)/ })
})

t.test('CORS preflight is not touched', async (t) => {
  let calls = 0
  const provider: TokenAuthProvider = { getUser () { calls++; return null } }
  const app = await build({ provider })
  t.teardown(() => app.close())
  app.options('/thing', async (req) => ({ user: req.user, preflight: true }))
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/thing',
    headers: { 'access-control-request-method': 'POST', origin: 'https://example.com', authorization: 'Bearer whatever' }
  })
  t.equal(preflight.statusCode, 200)
  t.same(preflight.json(), { user: null, preflight: true })
  t.equal(calls, 0, 'the provider was not asked')
  // A plain OPTIONS (not a preflight) is an ordinary request.
  await app.inject({ method: 'OPTIONS', url: '/thing', headers: { authorization: 'Bearer whatever' } })
  t.equal(calls, 1)
})

t.test('scopes', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  // no preHandler: naming scopes is enough to guard the route
  app.get('/write', { config: { tokenAuth: { scopes: ['write'] } } }, async (req) => ({ user: req.user?.username }))
  app.get('/rw', { config: { tokenAuth: { scopes: ['read', 'write'] } } }, async (req) => ({ user: req.user?.username }))
  app.get('/none', { config: { tokenAuth: { scopes: [] } } }, async (req) => ({ user: req.user?.username ?? null }))
  app.get('/write-pre', { config: { tokenAuth: { scopes: ['write'] } }, preHandler: app.auth }, async () => 'ok')

  const forbidden = await app.inject({ url: '/write', headers: bearer(TOKEN) })
  t.equal(forbidden.statusCode, 403)
  t.equal(forbidden.headers['www-authenticate'], 'Bearer realm="api", error="insufficient_scope", scope="write"')
  t.same(forbidden.json(), {
    statusCode: 403,
    code: 'FST_TOKEN_AUTH_INSUFFICIENT_SCOPE',
    error: 'Forbidden',
    message: 'The token lacks a scope this route requires'
  })
  t.equal((await app.inject({ url: '/write', headers: bearer(WRITER) })).statusCode, 200)
  t.same((await app.inject({ url: '/write', headers: bearer(WRITER) })).json(), { user: 'writer' })
  t.equal((await app.inject({ url: '/write-pre', headers: bearer(WRITER) })).statusCode, 200, 'with preHandler too')
  t.equal((await app.inject({ url: '/write-pre', headers: bearer(TOKEN) })).statusCode, 403)

  const rw = await app.inject({ url: '/rw', headers: bearer(TOKEN) })
  t.equal(rw.headers['www-authenticate'], 'Bearer realm="api", error="insufficient_scope", scope="read write"')
  t.equal((await app.inject({ url: '/rw', headers: bearer(WRITER) })).statusCode, 200)

  const missing = await app.inject({ url: '/write' })
  t.equal(missing.statusCode, 401, 'guarded without preHandler: no token')
  t.equal(missing.headers['www-authenticate'], NONE)
  const unknown = await app.inject({ url: '/write', headers: bearer('nope') })
  t.equal(unknown.statusCode, 401)
  t.equal(unknown.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')
  const malformed = await app.inject({ url: '/write', headers: { authorization: 'Bearer\tx' } })
  t.equal(malformed.statusCode, 400)

  t.same((await app.inject({ url: '/none' })).json(), { user: null }, 'an empty scope list is an open route')
})

t.test('a user without a scopes property has no scopes', async (t) => {
  const app = await build({ provider: { getUser: () => ({ id: 1, username: 'bare' }) } })
  t.teardown(() => app.close())
  app.get('/w', { config: { tokenAuth: { scopes: ['write'] } } }, async () => 'ok')
  t.equal((await app.inject({ url: '/w', headers: bearer('x') })).statusCode, 403)
})

t.test('a failing provider: 503 with Retry-After, a generic message, logged at error level', async (t) => {
  const INTERNAL = 'connection to db-host-42 refused, password=hunter2'
  const providers: Array<[string, TokenAuthProvider]> = [
    ['throws', { getUser () { throw new Error(INTERNAL) } }],
    ['rejects', { getUser: async () => { throw new Error(INTERNAL) } }],
    ['chain: both fail', new ChainTokenAuthProvider([{ getUser () { throw new Error(INTERNAL) } }, { getUser: async () => { throw new Error('second') } }])]
  ]
  for (const [name, provider] of providers) {
    const logs = logCapture()
    const app = await build({ provider }, { logger: logs.logger })
    app.get('/private', { preHandler: app.auth }, async () => 'secret data')
    app.get('/open', async () => 'open data')
    app.get('/scoped', { config: { tokenAuth: { scopes: ['x'] } } }, async () => 'scoped data')
    for (const url of ['/private', '/scoped']) {
      const res = await app.inject({ url, headers: bearer(TOKEN) })
      t.equal(res.statusCode, 503, `${name} ${url}: 503, never 401 or 200`)
      t.equal(res.headers['retry-after'], '5')
      t.equal(res.headers['www-authenticate'], undefined)
      t.same(res.json(), {
        statusCode: 503,
        code: 'FST_TOKEN_AUTH_UNAVAILABLE',
        error: 'Service Unavailable',
        message: 'Authentication is temporarily unavailable, retry later'
      })
      t.notMatch(res.body, 'db-host-42', 'the internal message is not sent')
    }
    t.equal((await app.inject({ url: '/open', headers: bearer(TOKEN) })).statusCode, 200, `${name}: open routes still answer`)
    // Three failures in well under a second: one error line (at most one a second during an outage).
    const errors = logs.lines.filter((l) => l.level === ERROR && l.msg === 'fastify-token-auth: token provider failed')
    t.equal(errors.length, 1, `${name}: logged at error level, once`)
    t.equal(errors[0].failure?.message, INTERNAL, 'the internal message goes to the log (and only there)')
    t.notMatch(logs.text(), TOKEN, `${name}: the token is not logged`)
    await app.close()
  }
})

t.test('Retry-After follows the option and TokenAuthUnavailableError', async (t) => {
  const app = await build({
    retryAfter: 7,
    provider: {
      getUser (token) {
        if (token === 'thirty') throw new TokenAuthUnavailableError('db down', { retryAfter: 30, cause: new Error('ECONNREFUSED') })
        if (token === 'default') throw new TokenAuthUnavailableError()
        throw new Error('plain')
      }
    }
  })
  t.teardown(() => app.close())
  app.get('/p', { preHandler: app.auth }, async () => 'x')
  const thirty = await app.inject({ url: '/p', headers: bearer('thirty') })
  t.equal(thirty.statusCode, 503)
  t.equal(thirty.headers['retry-after'], '30')
  t.equal((await app.inject({ url: '/p', headers: bearer('plain') })).headers['retry-after'], '7', 'option')
  // A TokenAuthUnavailableError without its own retryAfter gets the option's.
  t.equal((await app.inject({ url: '/p', headers: bearer('default') })).headers['retry-after'], '7')
  const e = new TokenAuthUnavailableError()
  t.equal(e.name, 'TokenAuthUnavailableError')
  t.equal(e.retryAfter, undefined)
  t.equal(e.cause, undefined)
})

t.test('a chain of providers: secret list first, then a custom async one', async (t) => {
  const asked: string[] = []
  const slow: TokenAuthProvider = {
    async getUser (token) {
      asked.push(token)
      await new Promise((resolve) => setImmediate(resolve))
      return token === 'db-token' ? { id: 42, username: 'db-user', scopes: ['write'] } : null
    }
  }
  const down = (async: boolean): TokenAuthProvider => ({
    getUser: async ? async () => { throw new Error('down') } : () => { throw new Error('down') }
  })

  const app = await build({ provider: [secret(), slow] })
  t.teardown(() => app.close())
  app.get('/me', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  const first = await app.inject({ url: '/me', headers: bearer(TOKEN) })
  t.equal(first.json().user.username, 'secret_token_user', 'the first provider wins')
  t.same(asked, [], 'later providers are not asked')
  const second = await app.inject({ url: '/me', headers: bearer('db-token') })
  t.same(second.json(), { user: { id: 42, username: 'db-user', scopes: ['write'] } })
  const unknown = await app.inject({ url: '/me', headers: bearer('nobody') })
  t.equal(unknown.statusCode, 401)
  t.equal(unknown.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')

  for (const async of [false, true]) {
    const label = async ? 'rejecting' : 'throwing'
    const chain = await build({ provider: [down(async), slow] })
    chain.get('/me', { preHandler: chain.auth }, async (req) => ({ user: req.user }))
    t.equal((await chain.inject({ url: '/me', headers: bearer('db-token') })).statusCode, 200, `${label} + a provider that knows: 200`)
    t.equal((await chain.inject({ url: '/me', headers: bearer('nobody') })).statusCode, 503, `${label} + unknown: 503, not 401`)
    await chain.close()
  }
  // a failure after an unknown answer also fails
  const after = await build({ provider: [secret(), down(true)] })
  after.get('/me', { preHandler: after.auth }, async () => 'x')
  t.equal((await after.inject({ url: '/me', headers: bearer(TOKEN) })).statusCode, 200)
  t.equal((await after.inject({ url: '/me', headers: bearer('nobody') })).statusCode, 503)
  await after.close()

  t.throws(() => new ChainTokenAuthProvider([]), { message: /at least one provider/ })
  t.throws(() => new ChainTokenAuthProvider(undefined as never), { message: /at least one provider/ })
})

t.test('a custom provider (the README example): a Map of tokens', async (t) => {
  // Return the user, or null for an unknown token; throw when you cannot tell (503).
  class MapTokenAuthProvider implements TokenAuthProvider {
    readonly #users: Map<string, TokenAuthUser>
    closed = false
    constructor (users: Map<string, TokenAuthUser>) { this.#users = users }
    getUser (token: string): TokenAuthUser | null { return this.#users.get(token) ?? null }
    close (): void { this.closed = true }
  }
  const provider = new MapTokenAuthProvider(new Map([['alice-token', { id: 1, username: 'alice', scopes: ['admin'] }]]))
  const app = Fastify()
  await app.register(tokenAuth, { provider })
  app.get('/admin', { config: { tokenAuth: { scopes: ['admin'] } } }, async (req) => ({ hello: req.user?.username }))
  t.same((await app.inject({ url: '/admin', headers: bearer('alice-token') })).json(), { hello: 'alice' })
  t.equal((await app.inject({ url: '/admin', headers: bearer('bob-token') })).statusCode, 401)
  await app.close()
  t.equal(provider.closed, true, 'close() was called on app.close()')
})

t.test('a JavaScript provider that answers undefined means unknown, not a crash', async (t) => {
  const map = new Map([['k', { id: 1, username: 'k' }]])
  const jsProvider = { getUser: (token: string) => map.get(token) } as unknown as TokenAuthProvider
  const app = await build({ provider: jsProvider })
  t.teardown(() => app.close())
  app.get('/p', { preHandler: app.auth }, async (req) => req.user?.username)
  t.equal((await app.inject({ url: '/p', headers: bearer('k') })).body, 'k')
  const res = await app.inject({ url: '/p', headers: bearer('other') })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')
  // in a chain, undefined moves on to the next provider
  const chain = await build({ provider: [jsProvider, secret()] })
  chain.get('/p', { preHandler: chain.auth }, async (req) => req.user?.username)
  t.equal((await chain.inject({ url: '/p', headers: bearer(TOKEN) })).body, 'secret_token_user')
  t.equal((await chain.inject({ url: '/p', headers: bearer('other') })).statusCode, 401)
  await chain.close()
})

t.test('per-route provider', async (t) => {
  const appToken = new SecretTokenAuthProvider({ tokens: [{ token: 'app-token', username: 'mobile-app' }] })
  const app = await build()
  t.teardown(() => app.close())
  app.post('/login', { config: { tokenAuth: { provider: appToken } }, preHandler: app.auth }, async (req) => req.user?.username)
  app.post('/admin', { config: { tokenAuth: { provider: appToken, scopes: ['x'] } } }, async () => 'x')
  t.equal((await app.inject({ method: 'POST', url: '/login', headers: bearer('app-token') })).body, 'mobile-app')
  t.equal((await app.inject({ method: 'POST', url: '/login', headers: bearer(TOKEN) })).statusCode, 401, 'the global provider is not used')
  t.equal((await app.inject({ method: 'POST', url: '/admin', headers: bearer('app-token') })).statusCode, 403)
})

t.test('options are validated at registration with a clear message', async (t) => {
  const bad: Array<[string, unknown, string, RegExp]> = [
    ['no provider', {}, 'provider', /option provider must be given \(or `database`\)/],
    ['null provider', { provider: null }, 'provider', /option provider must be given/],
    ['empty provider list', { provider: [] }, 'provider', /option provider must be given/],
    ['provider without getUser', { provider: { user: 1 } }, 'provider', /option provider must be a provider \(an object with a getUser\(token, request\) method\)/],
    ['a list with a non-provider', { provider: [secret(), 'x'] }, 'provider[1]', /option provider\[1\] must be a provider/],
    ['maxTokenLength 0', { provider: secret(), maxTokenLength: 0 }, 'maxTokenLength', /option maxTokenLength must be an integer from 1 to 65536, got 0/],
    ['maxTokenLength 1.5', { provider: secret(), maxTokenLength: 1.5 }, 'maxTokenLength', /option maxTokenLength must be an integer from 1 to 65536, got 1\.5/],
    ['maxTokenLength string', { provider: secret(), maxTokenLength: '100' }, 'maxTokenLength', /option maxTokenLength must be an integer from 1 to 65536, got "100"/],
    ['retryAfter -1', { provider: secret(), retryAfter: -1 }, 'retryAfter', /option retryAfter must be an integer from 0 to 86400 \(seconds\), got -1/],
    ['realm with a quote', { provider: secret(), realm: 'a"b' }, 'realm', /option realm must be printable ASCII without/],
    ['authDecorator not an identifier', { provider: secret(), authDecorator: 'a-b' }, 'authDecorator', /option authDecorator must be a JavaScript identifier/],
    ['drizzle.cache.ttl Infinity (a timer would fire after 1 ms)', { provider: secret(), drizzle: { cache: { ttl: Infinity } } }, 'drizzle.cache.ttl',
      /option drizzle\.cache\.ttl must be an integer from 0 to 2147483647 \(milliseconds\), got Infinity/],
    ['drizzle.queryTimeout Infinity', { provider: secret(), drizzle: { queryTimeout: Infinity } }, 'drizzle.queryTimeout', /option drizzle\.queryTimeout must be an integer from 1 to 2147483647/],
    ['a misspelt drizzle key', { provider: secret(), drizzle: { cahce: false } }, 'drizzle.cahce', /unknown option drizzle\.cahce \(known: drizzle\.cache, drizzle\.lastUsedInterval, drizzle\.queryTimeout\)/],
    ['a misspelt service key', { provider: secret(), service: { prefx: 'x' } }, 'service.prefx', /unknown option service\.prefx/],
    ['a misspelt passwordParams key', { provider: secret(), service: { passwordParams: { n: 17 } } }, 'service.passwordParams.n', /unknown option service\.passwordParams\.n/],
    ['passwordParams.ln out of range', { provider: secret(), service: { passwordParams: { ln: 30 } } }, 'service.passwordParams.ln', /option service\.passwordParams\.ln must be an integer from 10 to 22/],
    ['a bad prefix', { provider: secret(), service: { prefix: 'My-App' } }, 'service.prefix', /option service\.prefix must be a token prefix/]
  ]
  for (const [name, opts, option, message] of bad) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(tokenAuth, opts as TokenAuthOptions) }, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option, message }, name)
    await app.close()
  }
  const options = { provider: secret(), realm: 'r' }
  const frozen = JSON.stringify(Object.keys(options))
  const app = await build(options)
  t.equal(JSON.stringify(Object.keys(options)), frozen, 'the options object is not mutated')
  await app.close()
})

t.test('maxTokenLength', async (t) => {
  const app = await build({ maxTokenLength: 8, provider: { getUser: () => ({ id: 1, username: 'x' }) } })
  t.teardown(() => app.close())
  app.get('/p', { preHandler: app.auth }, async () => 'ok')
  t.equal((await app.inject({ url: '/p', headers: bearer('12345678') })).statusCode, 200)
  t.equal((await app.inject({ url: '/p', headers: bearer('123456789') })).statusCode, 400)
})

t.test('rejections are logged at info with the reason code and never the token', async (t) => {
  const logs = logCapture()
  const app = await build({}, { logger: logs.logger })
  t.teardown(() => app.close())
  app.get('/p', { preHandler: app.auth }, async () => 'ok')
  app.get('/w', { config: { tokenAuth: { scopes: ['admin'] } } }, async () => 'ok')
  const unknown = 'Unkn0wn-T0ken-' + 'z'.repeat(20)
  const cases: Array<[Record<string, string>, string, string]> = [
    [{}, '/p', 'FST_TOKEN_AUTH_MISSING'],
    [{ authorization: `Bearer ${unknown}` }, '/p', 'FST_TOKEN_AUTH_INVALID_TOKEN'],
    [{ authorization: `Bearer ${unknown} x` }, '/p', 'FST_TOKEN_AUTH_INVALID_REQUEST'],
    [{ authorization: `Bearer ${WRITER}` }, '/w', 'FST_TOKEN_AUTH_INSUFFICIENT_SCOPE'],
    [{ authorization: `Bearer ${TOKEN}` }, '/p', '']
  ]
  for (const [headers, url, code] of cases) {
    logs.lines.length = 0
    await app.inject({ url, headers })
    if (code === '') {
      t.notOk(logs.lines.some((l) => l.err !== undefined), 'success: no error logged')
      continue
    }
    const line = logs.lines.find((l) => l.err?.code === code)
    t.ok(line, `${code} logged`)
    t.equal(line?.level, INFO, `${code} at info level`)
    t.notOk(logs.lines.some((l) => l.level >= 40), `${code}: nothing at warn or error`)
    t.notOk(typeof line?.err === 'object' && 'stack' in line.err && String(line.err.stack).includes('\n    at '),
      `${code}: no stack trace built`)
  }
  t.notMatch(logs.text(), unknown, 'the presented token never appears in the logs')
  t.notMatch(logs.text(), WRITER)
  t.notMatch(logs.text(), TOKEN)
})

t.test('the provider is closed with the app, and ready() is awaited', async (t) => {
  const events: string[] = []
  const provider: TokenAuthProvider = {
    getUser: () => null,
    async ready () { await new Promise((resolve) => setTimeout(resolve, 10)); events.push('ready') },
    async close () { events.push('close') }
  }
  const app = await build({ provider })
  t.same(events, ['ready'], 'register waited for ready()')
  await app.close()
  t.same(events, ['ready', 'close'])

  const chained: string[] = []
  const a: TokenAuthProvider = { getUser: () => null, close () { chained.push('a') } }
  const b: TokenAuthProvider = { getUser: () => null, async ready () { chained.push('b ready') }, async close () { chained.push('b') } }
  const c: TokenAuthProvider = { getUser: () => null }
  const chain = await build({ provider: [a, b, c] })
  await chain.close()
  t.same(chained.sort(), ['a', 'b', 'b ready'], 'a chain readies and closes every provider')

  const failing = Fastify()
  await t.rejects(async () => {
    await failing.register(tokenAuth, { provider: { getUser: () => null, ready: async () => { throw new Error('LISTEN failed') } } })
  }, { message: 'LISTEN failed' })
  await failing.close()
})

// @fastify/auth and @fastify/jwt declare `fastify.auth` and `request.user` with their own types, which
// cannot merge with ours in one compilation: @fastify/auth's `auth` is TS2300 (duplicate identifier) in
// lib/plugin.ts, @fastify/jwt's `user` is TS2717 (hidden only by skipLibCheck). Declarations are global to
// a compilation, so importing them here would break `tsc -p .` for the whole project. They are loaded
// through a specifier the compiler does not resolve; at runtime they are the real packages.
async function load (name: string): Promise<any> { return (await import(name)).default }

t.test('beside @fastify/auth (authDecorator renamed)', async (t) => {
  const fastifyAuth = await load('@fastify/auth')
  const app = Fastify()
  await app.register(fastifyAuth)
  await app.register(tokenAuth, { provider: secret(), authDecorator: 'bearer' })
  const anyApp = app as any
  app.get('/p', { preHandler: anyApp.auth([anyApp.bearer]) }, async (req) => req.user?.username)
  t.equal((await app.inject({ url: '/p', headers: bearer(TOKEN) })).body, 'secret_token_user', '@fastify/auth composes it')
  const res = await app.inject({ url: '/p', headers: bearer('nope') })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')
  await app.close()

  const clash = Fastify()
  await clash.register(fastifyAuth)
  await t.rejects(async () => { await clash.register(tokenAuth, { provider: secret() }) },
    { message: 'fastify-token-auth: fastify.auth is already decorated (by @fastify/auth?); pick another name with the `authDecorator` option' })
  await clash.close()
})

t.test('beside @fastify/jwt (userProperty renamed)', async (t) => {
  const fastifyJwt = await load('@fastify/jwt')
  const app = Fastify()
  await app.register(fastifyJwt, { secret: 'jwt-secret-jwt-secret-jwt-secret' })
  await app.register(tokenAuth, { provider: secret(), userProperty: 'tokenUser' })
  const anyApp = app as any
  app.get('/token', { preHandler: app.auth }, async (req) => ({
    tokenUser: (req as unknown as { tokenUser: TokenAuthUser }).tokenUser.username,
    user: req.user
  }))
  app.get('/jwt', { onRequest: async (req: any) => { await req.jwtVerify() } }, async (req) => ({ user: req.user }))
  t.same((await app.inject({ url: '/token', headers: bearer(TOKEN) })).json(), { tokenUser: 'secret_token_user', user: null })
  const jwt = anyApp.jwt.sign({ sub: 'jwt-user' })
  t.equal((await app.inject({ url: '/jwt', headers: bearer(jwt) })).json().user.sub, 'jwt-user', '@fastify/jwt still sets request.user')
  t.equal((await app.inject({ url: '/token', headers: bearer(jwt) })).statusCode, 401, 'a JWT is not one of our tokens')
  await app.close()

  const clash = Fastify()
  await clash.register(fastifyJwt, { secret: 'jwt-secret-jwt-secret-jwt-secret' })
  await t.rejects(async () => { await clash.register(tokenAuth, { provider: secret() }) },
    { message: 'fastify-token-auth: request.user is already decorated (by @fastify/jwt?); pick another name with the `userProperty` option' })
  await clash.close()
})
