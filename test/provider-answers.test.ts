// What a provider returns is checked, not trusted: anything but an object is "unknown", scopes count
// only as an array, and a user object that throws is a provider failure (503), never a 500 or a crash.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import tokenAuth, { type TokenAuthProvider } from '../lib/index.js'
import { bearer } from './helpers/http.js'

async function appWith (t: Test, provider: TokenAuthProvider | TokenAuthProvider[]) {
  const app = Fastify()
  await app.register(tokenAuth, { provider })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  app.get('/admin', { config: { tokenAuth: { scopes: ['admin'] } } }, async () => 'admin')
  t.teardown(() => app.close())
  return app
}

for (const [name, value] of [['false', false], ['0', 0], ["''", ''], ['true', true], ['a string', 'alice']] as const) {
  for (const async of [false, true]) {
    t.test(`a provider answering ${name} (${async ? 'async' : 'sync'}) is an unknown token`, async (t) => {
      const app = await appWith(t, { getUser: (async ? async () => value : () => value) as unknown as TokenAuthProvider['getUser'] })
      const res = await app.inject({ url: '/me', headers: bearer('x') })
      t.equal(res.statusCode, 401)
      t.match(res.headers['www-authenticate'], /error="invalid_token"/)
    })
  }
}

t.test('a chain passes a non-object answer on to the next provider', async (t) => {
  const app = await appWith(t, [
    { getUser: () => false as never },
    { getUser: async (token: string) => token === 'known' ? { id: 1, username: 'b', scopes: [] } : null }
  ])
  t.equal((await app.inject({ url: '/me', headers: bearer('known') })).statusCode, 200)
  t.equal((await app.inject({ url: '/me', headers: bearer('other') })).statusCode, 401)
})

t.test('scopes count only as an array: a space-separated string is no scope at all', async (t) => {
  const app = await appWith(t, { getUser: () => ({ id: 1, username: 'a', scopes: 'notadmin read' as never }) })
  const res = await app.inject({ url: '/admin', headers: bearer('x') })
  t.equal(res.statusCode, 403, "'notadmin' does not carry 'admin'")
  t.match(res.headers['www-authenticate'], /error="insufficient_scope", scope="admin"/)
})

for (const async of [false, true]) {
  t.test(`a user object that throws is a provider failure (${async ? 'async' : 'sync'}): 503, the process lives`, async (t) => {
    const user = { id: 1, username: 'a', get scopes (): string[] { throw new Error('broken getter') } }
    const app = await appWith(t, { getUser: async ? async () => user : () => user })
    const res = await app.inject({ url: '/admin', headers: bearer('x') })
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
  })
}

t.test('a thenable that settles twice, or throws, is settled once', async (t) => {
  const twice = { then (ok: (v: unknown) => void, bad: (e: unknown) => void) { ok({ id: 1, username: 'a' }); bad(new Error('late')) } }
  const throws = { then () { throw new Error('thenable threw') } }
  const app = await appWith(t, { getUser: (token: string) => (token === 'twice' ? twice : throws) as never })
  t.equal((await app.inject({ url: '/me', headers: bearer('twice') })).statusCode, 200)
  t.equal((await app.inject({ url: '/me', headers: bearer('throws') })).statusCode, 503)
})

t.test('fastify.auth where no token was read says no, and warns once how to fix it', async (t) => {
  const lines: Array<{ level: number, msg: string }> = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (l: string) => { lines.push(JSON.parse(l)) } } } })
  await app.register(tokenAuth, { provider: { getUser: () => ({ id: 1, username: 'a' }) } })
  // A global onRequest guard runs before the per-route resolver: it fails closed.
  app.addHook('onRequest', app.auth)
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/x', headers: bearer('x') })).statusCode, 401)
  const warnings = lines.filter((l) => l.level === 40)
  t.equal(warnings.length, 1, 'warned once')
  t.match(warnings[0].msg, /auth ran where no token was read.*preHandler/)
})

t.test('the plugin registered twice gets a clear error', async (t) => {
  const app = Fastify()
  await app.register(tokenAuth, { provider: { getUser: () => null } })
  await t.rejects(async () => {
    await app.register(tokenAuth, { provider: { getUser: () => null }, authDecorator: 'auth2', userProperty: 'user2' })
  }, /already registered/)
})

t.test('a misspelt option is refused, not ignored', async (t) => {
  const provider = { getUser: () => null }
  await t.rejects(async () => { await Fastify().register(tokenAuth, { provider, rotues: false } as never) },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'rotues', message: /unknown option rotues \(known: provider, database, drizzle, service, routes, global, exclude, realm,/ })
  // Fastify's own register() options come in the same object and are fine.
  const app = Fastify()
  await app.register(tokenAuth, { provider, prefix: '/api', logLevel: 'warn' } as never)
  t.ok(app.hasDecorator('auth'))
})

t.test('two Authorization headers are malformed whatever the first one says', async (t) => {
  const app = await appWith(t, { getUser: (token) => token === 'abc123' ? { id: 1, username: 'a' } : null })
  for (const first of ['Basic eDp5', '', 'Bearer abc123']) {
    const res = await app.inject({ url: '/me', headers: { authorization: [first, 'Bearer abc123'] as never } })
    t.equal(res.statusCode, 400, JSON.stringify(first))
    t.match(res.headers['www-authenticate'], /error="invalid_request"/)
  }
})
