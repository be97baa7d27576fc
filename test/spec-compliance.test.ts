// End to end: every Authorization header case of issue 2, with the status, the WWW-Authenticate
// challenge (RFC 6750 §3) and Fastify's error body that a client sees.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import tokenAuth, { SecretTokenAuthProvider, type TokenAuthOptions } from '../lib/index.js'

const TOKEN = 'tok'
const SECRET = 'S3cr3t-T0ken_value~42'

async function build (opts: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, {
    provider: new SecretTokenAuthProvider({ tokens: [TOKEN, SECRET, { token: 'reader', scopes: ['read'] }] }),
    ...opts
  })
  app.get('/private', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  app.post('/private', { preHandler: app.auth }, async (req) => ({ user: req.user }))
  app.post('/early', { onRequest: app.auth }, async (req) => ({ user: req.user }))
  app.get('/scoped', { config: { tokenAuth: { scopes: ['write'] } } }, async (req) => ({ user: req.user }))
  return app
}

const NONE = 'Bearer realm="api"'
const INVALID_REQUEST = 'Bearer realm="api", error="invalid_request"'
const INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'

const MISSING_BODY = {
  statusCode: 401,
  code: 'FST_TOKEN_AUTH_MISSING',
  error: 'Unauthorized',
  message: 'Authentication required: send Authorization: Bearer <token>'
}
const MALFORMED_BODY = {
  statusCode: 400,
  code: 'FST_TOKEN_AUTH_INVALID_REQUEST',
  error: 'Bad Request',
  message: 'Malformed Authorization header'
}
const INVALID_TOKEN_BODY = { statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_TOKEN', error: 'Unauthorized', message: 'Invalid token' }

// [name, Authorization value (undefined: no header), status, WWW-Authenticate (undefined: none sent)]
const table: Array<[string, string | undefined, number, string | undefined]> = [
  ['missing', undefined, 401, NONE],
  ['empty', '', 401, NONE],
  ['Bearer', 'Bearer', 400, INVALID_REQUEST],
  ['Bearer + space (trailing OWS stripped, RFC 9110 §5.5)', 'Bearer ', 400, INVALID_REQUEST],
  ['bearer tok', 'bearer tok', 200, undefined],
  ['BEARER tok', 'BEARER tok', 200, undefined],
  ['Bearer  tok (two spaces, 1*SP)', 'Bearer  tok', 200, undefined],
  ['Bearer<TAB>tok', 'Bearer\ttok', 400, INVALID_REQUEST],
  ['trailing space', 'Bearer tok ', 200, undefined],
  ['Token Bearer tok (other scheme)', 'Token Bearer tok', 401, NONE],
  ['Basic xBearer tok', 'Basic xBearer tok', 401, NONE],
  ['Basic credentials', 'Basic dXNlcjpwYXNz', 401, NONE],
  ['Bearer a b', 'Bearer a b', 400, INVALID_REQUEST],
  ['illegal characters', 'Bearer to<k>', 400, INVALID_REQUEST],
  ['quoted token', 'Bearer "tok"', 400, INVALID_REQUEST],
  ['5,000-character token', 'Bearer ' + 'a'.repeat(5000), 400, INVALID_REQUEST],
  ['non-ASCII', 'Bearer tök', 400, INVALID_REQUEST],
  ['unknown token', 'Bearer unknown-token', 401, INVALID_TOKEN]
]

t.test('header table', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  for (const [name, value, status, challenge] of table) {
    const res = await app.inject({
      method: 'GET',
      url: '/private',
      headers: value === undefined ? {} : { authorization: value }
    })
    t.equal(res.statusCode, status, `${name}: status`)
    t.equal(res.headers['www-authenticate'], challenge, `${name}: WWW-Authenticate`)
    const body = res.json()
    if (status === 200) {
      t.same(body, { user: { id: 'secret_token_user', username: 'secret_token_user', scopes: [] } }, `${name}: user`)
    } else {
      t.match(res.headers['content-type'], /^application\/json/, `${name}: JSON`)
      t.same(body, status === 400 ? MALFORMED_BODY : challenge === INVALID_TOKEN ? INVALID_TOKEN_BODY : MISSING_BODY, `${name}: body`)
    }
  }
})

t.test('two Authorization headers through inject (array value)', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  for (const pair of [[`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], [`Bearer ${TOKEN}`, 'Bearer other'], [`Bearer ${TOKEN}`, 'Basic x']]) {
    // light-my-request turns an array into repeated raw headers, as a client sending two would (its types say string)
    const res = await app.inject({ url: '/private', headers: { authorization: pair as unknown as string } })
    t.equal(res.statusCode, 400, `${pair.join(' + ')}`)
    t.equal(res.headers['www-authenticate'], INVALID_REQUEST)
    t.same(res.json(), MALFORMED_BODY)
  }
})

function rawRequest (port: number, head: string | Buffer): Promise<{ status: number, headers: string, body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const [headers, body] = text.split('\r\n\r\n', 2)
      resolve({ status: Number(headers.split(' ', 2)[1]), headers: headers.toLowerCase(), body })
    })
    socket.end(head)
  })
}

t.test('a real server: two Authorization headers, and raw bytes', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo

  const one = await rawRequest(port, `GET /private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`)
  t.equal(one.status, 200, 'one header: accepted')

  const two = await rawRequest(port,
    `GET /private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`)
  t.equal(two.status, 400, 'two headers: 400 even though Node keeps only the first')
  t.match(two.headers, 'www-authenticate: bearer realm="api", error="invalid_request"')
  t.same(JSON.parse(two.body), MALFORMED_BODY)

  const apart = await rawRequest(port,
    `GET /private HTTP/1.1\r\nauthorization: Bearer ${TOKEN}\r\nHost: x\r\nAUTHORIZATION: Bearer other\r\nConnection: close\r\n\r\n`)
  t.equal(apart.status, 400, 'two headers in different case, apart')

  // UTF-8 bytes in the header arrive as latin1 characters: still outside the grammar.
  const utf8 = Buffer.concat([
    Buffer.from('GET /private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t'),
    Buffer.from('ö', 'utf8'),
    Buffer.from('k\r\nConnection: close\r\n\r\n')
  ])
  const nonAscii = await rawRequest(port, utf8)
  t.equal(nonAscii.status, 400, 'non-ASCII bytes: 400')
  t.match(nonAscii.headers, 'error="invalid_request"')
})

t.test('tokens in the query string or the body are not accepted', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const query = await app.inject({ url: `/private?access_token=${TOKEN}` })
  t.equal(query.statusCode, 401)
  t.equal(query.headers['www-authenticate'], NONE, 'no error attribute: no credentials were presented')
  t.same(query.json(), MISSING_BODY)

  const json = await app.inject({ method: 'POST', url: '/private', payload: { access_token: TOKEN } })
  t.equal(json.statusCode, 401)
  t.equal(json.headers['www-authenticate'], NONE)

  const jsonEarly = await app.inject({ method: 'POST', url: '/early', payload: { access_token: TOKEN } })
  t.equal(jsonEarly.statusCode, 401, 'auth as onRequest: 401 before the body is read')
  t.equal(jsonEarly.headers['www-authenticate'], NONE)

  const form = {
    method: 'POST' as const,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `access_token=${TOKEN}`
  }
  const formEarly = await app.inject({ ...form, url: '/early' })
  t.equal(formEarly.statusCode, 401, 'form body (RFC 6750 §2.2) is not read')
  t.equal(formEarly.headers['www-authenticate'], NONE)
  // With auth as preHandler, Fastify refuses the unparsable body first: still never 200.
  const formLate = await app.inject({ ...form, url: '/private' })
  t.equal(formLate.statusCode, 415)
})

t.test('realm option', async (t) => {
  const app = await build({ realm: 'my service' })
  t.teardown(() => app.close())
  const missing = await app.inject({ url: '/private' })
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="my service"')
  const bad = await app.inject({ url: '/private', headers: { authorization: 'Bearer x y' } })
  t.equal(bad.headers['www-authenticate'], 'Bearer realm="my service", error="invalid_request"')
  const unknown = await app.inject({ url: '/private', headers: { authorization: 'Bearer nope' } })
  t.equal(unknown.headers['www-authenticate'], 'Bearer realm="my service", error="invalid_token"')
  const scope = await app.inject({ url: '/scoped', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(scope.headers['www-authenticate'], 'Bearer realm="my service", error="insufficient_scope", scope="write"')
})

t.test('a realm that cannot be quoted is refused at registration', async (t) => {
  for (const realm of ['say "hi"', 'back\\slash', 'new\nline', 'café']) {
    const app = Fastify()
    await t.rejects(
      async () => { await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: [TOKEN] }), realm }) },
      { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'realm', message: /option realm must be printable ASCII without '"' or '\\'/ },
      JSON.stringify(realm)
    )
    await app.close()
  }
})

t.test('error.headers survives a custom error handler', async (t) => {
  t.test('handler that re-sends the error', async (t) => {
    const app = Fastify()
    const seen: unknown[] = []
    app.setErrorHandler((err, _req, reply) => {
      seen.push((err as { headers?: unknown }).headers)
      reply.send(err)
    })
    await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: [TOKEN] }) })
    app.get('/private', { preHandler: app.auth }, async () => 'ok')
    const res = await app.inject({ url: '/private', headers: { authorization: 'Bearer nope' } })
    t.equal(res.statusCode, 401)
    t.equal(res.headers['www-authenticate'], INVALID_TOKEN)
    t.same(seen, [{ 'www-authenticate': INVALID_TOKEN }], 'the handler sees error.headers')
    await app.close()
  })

  t.test('handler with its own body that applies error.headers', async (t) => {
    const app = Fastify()
    await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: [TOKEN] }) })
    app.setErrorHandler((err: Error & { statusCode?: number, headers?: Record<string, string> }, _req, reply) => {
      if (err.headers !== undefined) reply.headers(err.headers)
      reply.code(err.statusCode ?? 500).send({ custom: true, code: (err as { code?: string }).code })
    })
    app.get('/private', { preHandler: app.auth }, async () => 'ok')
    const res = await app.inject({ url: '/private', headers: { authorization: 'Bearer a b' } })
    t.equal(res.statusCode, 400)
    t.equal(res.headers['www-authenticate'], INVALID_REQUEST)
    t.same(res.json(), { custom: true, code: 'FST_TOKEN_AUTH_INVALID_REQUEST' })
    await app.close()
  })
})

t.test('error bodies never echo the token', async (t) => {
  const app = await build()
  t.teardown(() => app.close())
  const unknown = 'Unkn0wn-Token_Value.xyz'
  const cases: Array<[string, string, number]> = [
    ['unknown', `Bearer ${unknown}`, 401],
    ['malformed', `Bearer ${unknown} ${unknown}`, 400],
    ['tab', `Bearer\t${unknown}`, 400],
    ['other scheme', `Token ${unknown}`, 401]
  ]
  for (const [name, value, status] of cases) {
    const res = await app.inject({ url: '/private', headers: { authorization: value } })
    t.equal(res.statusCode, status, name)
    t.notMatch(res.body, unknown, `${name}: body`)
    t.notMatch(JSON.stringify(res.headers), unknown, `${name}: headers`)
  }
  const forbidden = await app.inject({ url: '/scoped', headers: { authorization: `Bearer ${SECRET}` } })
  t.equal(forbidden.statusCode, 403)
  t.notMatch(forbidden.body, SECRET, '403 body')
  t.notMatch(JSON.stringify(forbidden.headers), SECRET, '403 headers')
})
