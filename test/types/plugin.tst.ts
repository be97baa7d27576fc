// Type tests (tstyche): what an app writes compiles, with the types it expects; misuse does not.
// Compiled by `tsc -p .` too (it is under test/). The app-named user type is in custom-user/, which has
// its own tsconfig: an augmentation is global to a compilation and would leak into these checks.
import Fastify, { type FastifyContextConfig, type FastifyInstance, type FastifyRequest, type onRequestHookHandler } from 'fastify'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { expect, test } from 'tstyche'
import tokenAuth, {
  ChainTokenAuthProvider, SecretTokenAuthProvider, TokenAuthUnavailableError, errorCodes, FST_TOKEN_AUTH_INVALID_TOKEN,
  parseBearer, Reason,
  type DefaultTokenAuthUser, type TokenAuthOptions, type TokenAuthProvider, type TokenAuthRouteConfig, type TokenAuthUser
} from '../../lib/index.js'

const app = Fastify()

test('registering the plugin', async () => {
  await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: ['abc123'] }) })
  await app.register(tokenAuth, {
    provider: [new SecretTokenAuthProvider({ tokens: [{ token: 'svc', username: 'billing', scopes: ['read'] }] })],
    realm: 'api',
    authDecorator: 'bearer',
    userProperty: 'tokenUser',
    maxTokenLength: 512,
    retryAfter: 10
  })
  expect(tokenAuth).type.not.toBe<unknown>()
  // @ts-expect-error Type 'string' is not assignable to type 'readonly (string | SecretTokenEntry)[]'
  expect(new SecretTokenAuthProvider({ tokens: 'abc' })).type.toBe<SecretTokenAuthProvider>()
  // @ts-expect-error No overload matches this call
  await app.register(tokenAuth, { provider: { close () {} } })
  // @ts-expect-error No overload matches this call
  await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: ['a'] }), realm: 1 })
  expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ provider: new SecretTokenAuthProvider({ tokens: ['a'] }), maxTokenLength: '1' })
})

test('request.user is the default user or null', () => {
  expect<FastifyRequest['user']>().type.toBe<DefaultTokenAuthUser | null>()
  expect<TokenAuthUser>().type.toBe<DefaultTokenAuthUser>()
  app.get('/me', async (request) => {
    expect(request.user).type.toBe<DefaultTokenAuthUser | null>()
    expect(request.user?.scopes).type.toBe<readonly string[] | undefined>()
    expect(request.user?.id).type.toBe<string | number | undefined>()
    return { name: request.user?.username }
  })
})

test('fastify.auth is a hook for preHandler and onRequest', () => {
  expect(app.auth).type.toBe<onRequestHookHandler>()
  app.get('/a', { preHandler: app.auth }, async () => 'a')
  app.get('/b', { onRequest: app.auth }, async () => 'b')
  app.get('/c', { preHandler: [app.auth], onRequest: [app.auth] }, async () => 'c')
  app.route({ method: 'POST', url: '/d', preHandler: app.auth, handler: async () => 'd' })
  app.register(async (child: FastifyInstance) => {
    child.addHook('onRequest', child.auth)
    child.addHook('preHandler', child.auth)
  })
})

test('config.tokenAuth', () => {
  app.get('/open', { config: { tokenAuth: false } }, async () => 'x')
  app.get('/scoped', { config: { tokenAuth: { scopes: ['write'] } } }, async () => 'x')
  app.get('/own', { config: { tokenAuth: { provider: new SecretTokenAuthProvider({ tokens: ['a'] }) } } }, async () => 'x')
  expect<TokenAuthRouteConfig>().type.toBeAssignableFrom(false as const)
  expect<TokenAuthRouteConfig>().type.toBeAssignableFrom({ scopes: ['a', 'b'] })
  expect<TokenAuthRouteConfig>().type.not.toBeAssignableFrom(true as const)
  expect<TokenAuthRouteConfig>().type.not.toBeAssignableFrom({ scopes: 'write' })
  expect<FastifyContextConfig['tokenAuth']>().type.toBe<TokenAuthRouteConfig | undefined>()
  // (Fastify infers a route's `config` type from the literal, so a wrong `tokenAuth` in an inline route
  // config is not a type error there; the plugin refuses it when the route is declared: plugin.test.ts.)
})

test('a route with the TypeBox type provider', () => {
  const typed = app.withTypeProvider<TypeBoxTypeProvider>()
  typed.post('/items/:id', {
    schema: {
      params: Type.Object({ id: Type.Number() }),
      body: Type.Object({ name: Type.String() }),
      response: { 200: Type.Object({ id: Type.Number(), name: Type.String(), by: Type.String() }) }
    },
    preHandler: typed.auth,
    config: { tokenAuth: { scopes: ['write'] } }
  }, async (request) => {
    expect(request.params.id).type.toBe<number>()
    expect(request.body.name).type.toBe<string>()
    expect(request.user).type.toBe<DefaultTokenAuthUser | null>()
    return { id: request.params.id, name: request.body.name, by: request.user?.username ?? '' }
  })
  typed.get('/typed-on', { onRequest: typed.auth, schema: { querystring: Type.Object({ q: Type.String() }) } }, async (request) => {
    expect(request.query.q).type.toBe<string>()
    return request.user?.username
  })
})

test('providers', async () => {
  const sync: TokenAuthProvider = { getUser: (token) => token === 'a' ? { id: 1, username: 'a' } : null }
  const async: TokenAuthProvider = {
    async getUser (token: string, request: FastifyRequest) {
      expect(request.url).type.toBe<string>()
      if (token === 'down') throw new TokenAuthUnavailableError('db down', { retryAfter: 30 })
      return null
    },
    async close () {}
  }
  expect(new ChainTokenAuthProvider([sync, async])).type.toBeAssignableTo<TokenAuthProvider>()
  expect(new SecretTokenAuthProvider({ tokens: ['a'] })).type.toBeAssignableTo<TokenAuthProvider>()
  // @ts-expect-error Type '{ id: number; }' is not assignable to type 'DefaultTokenAuthUser
  const bad: TokenAuthProvider = { getUser: () => ({ id: 1 }) }
  expect(bad).type.toBe<TokenAuthProvider>()
  expect<TokenAuthProvider>().type.not.toBeAssignableFrom({ getUser: (token: number) => null })
  expect(parseBearer('Bearer a', 10)).type.toBe<string | typeof Reason.MISSING | typeof Reason.MALFORMED>()
})

test('error codes are exported at runtime and in types', () => {
  const err = new FST_TOKEN_AUTH_INVALID_TOKEN()
  expect(err.code).type.toBe<'FST_TOKEN_AUTH_INVALID_TOKEN'>()
  expect(err.statusCode).type.toBe<401>()
  expect(errorCodes.FST_TOKEN_AUTH_INVALID_TOKEN).type.toBe<typeof FST_TOKEN_AUTH_INVALID_TOKEN>()
})
