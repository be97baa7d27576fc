// The login routes in @fastify/swagger's OpenAPI document: bodies, responses, tags, and the bearer
// security scheme on the guarded routes.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import tokenAuth, { SecretTokenAuthProvider } from '../lib/index.js'
import type { LoginRoutesOptions } from '../lib/routes/options.js'
import { FAST_PASSWORD_PARAMS, freshDatabase } from './helpers/db.js'

const { database } = await freshDatabase(t)

interface Operation {
  tags?: string[]
  summary?: string
  security?: Array<Record<string, string[]>>
  requestBody?: { required: boolean, content: Record<string, { schema: Record<string, any> }> }
  responses: Record<string, { description?: string, content?: Record<string, { schema: Record<string, any> }> }>
}
interface Document {
  openapi: string
  components: { securitySchemes: Record<string, unknown> }
  paths: Record<string, Record<string, Operation>>
}

async function document (routes: LoginRoutesOptions = {}, declareScheme = true): Promise<{ app: FastifyInstance, doc: Document }> {
  const app = Fastify()
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'test', version: '1.0.0' },
      components: declareScheme ? { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } } : {}
    }
  })
  await app.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes })
  app.get('/me', { preHandler: app.auth, schema: declareScheme ? { security: [{ bearerAuth: [] }] } : {} }, async (request) => ({ user: request.user }))
  await app.ready()
  return { app, doc: app.swagger() as unknown as Document }
}

t.test('/login, /logout and /logout/all with their schemas and security', async (t) => {
  const { app, doc } = await document()
  t.teardown(() => app.close())
  t.match(doc.openapi, /^3\./)
  t.same(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer' })
  t.same(Object.keys(doc.paths).sort(), ['/login', '/logout', '/logout/all', '/me', '/password', '/tokens', '/tokens/{id}'])

  const login = doc.paths['/login'].post
  t.same(login.tags, ['auth'])
  t.match(login.summary, /log in/i)
  t.same(login.security, [], 'an open /login says it needs no token')
  t.equal(login.requestBody?.required, true)
  const body = login.requestBody?.content['application/json'].schema
  t.match(body, {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: {
      username: { type: 'string', minLength: 1, maxLength: 150 },
      password: { type: 'string', minLength: 1, maxLength: 1024 },
      name: { type: 'string', maxLength: 200 }
    }
  })
  t.same(Object.keys(login.responses).sort(), ['200', '400', '401', '403', '413', '415', '429', '503'])
  const ok = login.responses['200'].content?.['application/json'].schema
  t.match(ok, { type: 'object', required: ['token', 'token_type'], properties: { token: { type: 'string' }, token_type: { enum: ['Bearer'] } } })
  t.notOk('expires_in' in (ok?.properties ?? {}), 'no expires_in when tokens never expire')
  for (const code of ['400', '401', '429', '503']) {
    t.match(login.responses[code].content?.['application/json'].schema, {
      properties: { statusCode: { type: 'integer' }, code: { type: 'string' }, error: { type: 'string' }, message: { type: 'string' } }
    }, `${code}: Fastify's error body`)
    t.ok(login.responses[code].description, `${code} is described`)
  }

  for (const path of ['/logout', '/logout/all']) {
    const op = doc.paths[path].post
    t.same(op.tags, ['auth'], path)
    t.same(op.security, [{ bearerAuth: [] }], `${path} needs a bearer token`)
    t.notOk(op.requestBody, `${path} takes no body`)
    t.same(Object.keys(op.responses).sort(), ['204', '400', '401', '403', '503'])
  }

  // Token self-service: every operation needs a token, and says what it answers.
  const operations = [
    ['/tokens', 'get', ['200', '401', '403', '503'], 'tokens'],
    ['/tokens', 'post', ['201', '400', '401', '403', '413', '415', '503'], 'tokens'],
    ['/tokens/{id}', 'delete', ['204', '401', '403', '404', '503'], 'tokens'],
    ['/password', 'post', ['200', '400', '401', '403', '413', '415', '429', '503'], 'auth']
  ] as const
  for (const [path, method, codes, tag] of operations) {
    const op = doc.paths[path][method]
    t.same(op.tags, [tag], `${method} ${path}`)
    t.same(op.security, [{ bearerAuth: [] }], `${method} ${path} needs a bearer token`)
    t.same(Object.keys(op.responses).sort(), codes, `${method} ${path}: its responses`)
  }
  t.match(doc.paths['/tokens'].post.requestBody?.content['application/json'].schema, {
    type: 'object', additionalProperties: false, properties: { name: { type: 'string' }, scopes: { type: 'array' }, expiresIn: { type: 'integer' } }
  })
})

t.test('with expiry, a login guard and no throttle', async (t) => {
  const { app, doc } = await document({
    tokenExpiresIn: 3600,
    throttle: false,
    loginGuard: new SecretTokenAuthProvider({ tokens: ['app-token'] })
  })
  t.teardown(() => app.close())
  const login = doc.paths['/login'].post
  t.same(login.security, [{ bearerAuth: [] }], 'the guarded /login needs the app token')
  t.match(login.responses['200'].content?.['application/json'].schema.properties, { expires_in: { type: 'integer' } })
  t.notOk('429' in login.responses, 'no 429 without a throttle')
  t.match(login.responses['401'].description, /app token/)
})

t.test('custom paths and scheme name; or no security at all for an app without the scheme', async (t) => {
  const custom = Fastify()
  t.teardown(() => custom.close())
  await custom.register(swagger, {
    openapi: { info: { title: 'x', version: '1' }, components: { securitySchemes: { token: { type: 'http', scheme: 'bearer' } } } }
  })
  await custom.register(tokenAuth, {
    database,
    service: { passwordParams: FAST_PASSWORD_PARAMS },
    routes: { login: '/auth/token', logout: '/auth/revoke', logoutAll: false, securityScheme: 'token' }
  })
  await custom.ready()
  const doc = custom.swagger() as unknown as Document
  t.same(Object.keys(doc.paths).sort(), ['/auth/revoke', '/auth/token', '/password', '/tokens', '/tokens/{id}'])
  t.same(doc.paths['/auth/revoke'].post.security, [{ token: [] }])

  const { app, doc: bare } = await document({ securityScheme: false }, false)
  t.teardown(() => app.close())
  t.notOk('security' in bare.paths['/logout'].post)
  t.notOk('security' in bare.paths['/login'].post)
  t.ok(bare.paths['/login'].post.requestBody)
})
