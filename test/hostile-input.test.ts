// Hostile input on protected routes: oversized, malformed, binary and injection-shaped credentials
// get a 4xx (Fastify's JSON error body wherever Fastify answers), never a 500, and the token is never
// echoed. Through `inject` and over a real socket (Node's own HTTP parser answers some of them).
import * as net from 'node:net'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth from '../lib/index.js'
import { FAST_PASSWORD_PARAMS, freshDatabase } from './helpers/db.js'

const PASSWORD = 'correct horse battery staple'

async function build (t: Test): Promise<{ app: FastifyInstance, token: string, errors: string[] }> {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('alice', PASSWORD)
  const { token } = await service.issueToken(user.id)
  const errors: string[] = []
  const app = Fastify({
    logger: { level: 'error', stream: { write (line: string) { errors.push(line) } } }
  })
  await app.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS } })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ id: req.user?.id }))
  app.post('/me', { preHandler: app.auth }, async (req) => ({ id: req.user?.id }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, token, errors }
}

function isErrorBody (t: Test, body: unknown, status: number, what: string): void {
  t.match(body, { statusCode: status, error: String, message: String }, `${what}: Fastify's error body`)
}

/** Sends raw bytes on a new connection; resolves to the status, the raw head and the body. */
async function raw (port: number, request: Buffer | string): Promise<{ status: number, head: string, body: string }> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', (err) => {
      // The server may reset the connection once it has answered: keep what came.
      if (chunks.length > 0) done()
      else reject(err)
    })
    socket.on('end', done)
    socket.on('close', done)
    let settled = false
    function done (): void {
      if (settled) return
      settled = true
      const text = Buffer.concat(chunks).toString('latin1')
      const [head, ...rest] = text.split('\r\n\r\n')
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n') })
    }
    // No end(): a half-closed client makes Node drop a response still being computed.
    socket.write(request)
  })
}

const request = (auth: Buffer | string, method = 'GET'): Buffer => Buffer.concat([
  Buffer.from(`${method} /me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: `, 'latin1'),
  typeof auth === 'string' ? Buffer.from(auth, 'latin1') : auth,
  Buffer.from('\r\n\r\n', 'latin1')
])

t.test('through inject: oversized, injection-shaped and non-ASCII credentials', async (t) => {
  const { app, token, errors } = await build(t)
  const cases: Array<[string, string, number]> = [
    ['a 100 KB token', 'Bearer ' + 'a'.repeat(100_000), 400],
    ['a 1 MB header', 'Bearer ' + 'A'.repeat(1 << 20), 400],
    ['SQL metacharacters', "Bearer ' OR '1'='1' --", 400],
    ['SQL in a token-shaped string', "Bearer tat_x';DROP TABLE token_auth_tokens;--", 400],
    ['a LIKE pattern', 'Bearer tat_%', 400],
    ['grammar-valid SQL-ish token', 'Bearer or+1/1=', 401],
    ['the real token with a quote', `Bearer ${token}'`, 400],
    ['the real token with a semicolon', `Bearer ${token};`, 400],
    ['the real token twice', `Bearer ${token} ${token}`, 400],
    ['the real token, comma-separated', `Bearer ${token},${token}`, 400],
    ['JSON', 'Bearer {"$ne":null}', 400],
    ['non-ASCII', `Bearer ${token.slice(0, -1)}é`, 400],
    ['an emoji', 'Bearer \u{1F600}', 400],
    ['a lone surrogate', 'Bearer ab\ud800cd', 400],
    ['a format string', 'Bearer %s%s%n%x', 400],
    ['path traversal', 'Bearer ../../etc/passwd', 401],
    ['the prefix only', 'Bearer tat_', 401],
    ['__proto__', 'Bearer __proto__', 401],
    ['constructor', 'Bearer constructor', 401]
  ]
  for (const [name, authorization, status] of cases) {
    let res
    try {
      res = await app.inject({ url: '/me', headers: { authorization } })
    } catch (err) {
      // light-my-request (like Node) refuses to send some header values at all: not a server answer.
      t.comment(`${name}: not sendable (${(err as Error).message})`)
      continue
    }
    t.equal(res.statusCode, status, `${name}: ${status}`)
    isErrorBody(t, res.json(), status, name)
    const echoed = authorization.slice(7, 200)
    t.notOk(res.body.includes(echoed) || JSON.stringify(res.headers).includes(echoed), `${name}: the credentials are not echoed`)
  }
  t.equal((await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, 'the real token still works')
  t.same(errors, [], 'nothing logged at error level')
})

t.test('over a real socket: Node\'s limits and raw bytes', async (t) => {
  const { app, token, errors } = await build(t)
  const port = (app.server.address() as net.AddressInfo).port

  // Node's default limit on the request head is 16 KiB.
  const nearLimit = await raw(port, request('Bearer ' + 'a'.repeat(15_000)))
  t.equal(nearLimit.status, 400, 'a header just under Node\'s limit: the plugin\'s 400 (token too long)')
  isErrorBody(t, JSON.parse(nearLimit.body), 400, 'just under the limit')
  t.match(nearLimit.head, /www-authenticate: Bearer realm="api", error="invalid_request"/i)
  for (const size of [16_500, 17_000, 64_000]) {
    const over = await raw(port, request('Bearer ' + 'a'.repeat(size)))
    t.equal(over.status, 431, `a ${size}-character header: 431 from Node/Fastify`)
    t.notOk(over.body.includes('a'.repeat(100)), 'the header is not echoed')
  }
  const overLogin = await raw(port, `POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nX-Pad: ${'p'.repeat(17_000)}\r\nContent-Length: 2\r\n\r\n{}`)
  t.equal(overLogin.status, 431, '/login with an oversized head: 431')

  const cases: Array<[string, Buffer | string, number[]]> = [
    ['non-UTF-8 bytes', Buffer.concat([Buffer.from('Bearer tat_'), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80])]), [400]],
    ['a Latin-1 byte inside the real token', Buffer.concat([Buffer.from('Bearer ' + token.slice(0, 10)), Buffer.from([0xe9]), Buffer.from(token.slice(11))]), [400]],
    ['a null byte', Buffer.concat([Buffer.from('Bearer ' + token.slice(0, 10)), Buffer.from([0]), Buffer.from(token.slice(10))]), [400]],
    ['a null byte at the end', Buffer.concat([Buffer.from('Bearer ' + token), Buffer.from([0])]), [400]],
    ['a bare CR', `Bearer ${token}\rX-Injected: 1`, [400]],
    ['a bare LF (obsolete line folding)', `Bearer ${token}\n x`, [400]],
    ['DEL', `Bearer ${token}\x7f`, [400]],
    ['a tab inside', `Bearer ${token.slice(0, 10)}\t${token.slice(10)}`, [400]],
    ['SQL metacharacters', "Bearer ' OR 1=1; DROP TABLE token_auth_tokens; --", [400]],
    ['an empty value', '', [401]]
  ]
  for (const [name, auth, statuses] of cases) {
    const res = await raw(port, request(auth))
    t.ok(statuses.includes(res.status), `${name}: ${res.status} (expected ${statuses.join(' or ')})`)
    t.not(res.status, 500, `${name}: not a 500`)
    if (res.body !== '') isErrorBody(t, JSON.parse(res.body), res.status, name)
    t.notOk(res.body.includes(token.slice(4, 20)) || res.head.includes(token.slice(4, 20)), `${name}: the token is not echoed`)
  }
  // The server is still fine, and the real token works.
  const ok = await raw(port, request(`Bearer ${token}`))
  t.equal(ok.status, 200, 'the real token still works over the socket')
  t.same(errors, [], 'nothing logged at error level')
})
