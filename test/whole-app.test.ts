// Guarding a whole app (global mode), beside the Fastify plugins apps really use, registered as the
// README's "Protecting a whole app" shows: @fastify/cors and @fastify/helmet first, then the plugin,
// then @fastify/swagger-ui, @fastify/static, @fastify/websocket and @fastify/multipart, and routes
// declared before and after. Every route that is not excluded, including those the other plugins
// add, answers 401 without a token; no path trick reaches a guarded handler without one.
import { mkdtempSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import multipart from '@fastify/multipart'
import fastifyStatic from '@fastify/static'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import websocket from '@fastify/websocket'
import WebSocket from 'ws'
import tokenAuth, { SecretTokenAuthProvider } from '../lib/index.js'
import { bearer } from './helpers/http.js'
import { rawRequest } from './helpers/raw-http.js'

const TOKEN = 'whole-app-token'
const ORIGIN = 'https://app.example.com'
const MB = 1024 * 1024

interface Built { app: FastifyInstance, port: number, reached: string[], routes: Array<{ method: string, url: string }> }

async function build (opts: { corsAfter?: boolean, lenientRouter?: boolean } = {}): Promise<Built> {
  // lenientRouter: the router options that make more paths reach a route.
  const router = opts.lenientRouter === true ? { routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true, caseSensitive: false } } : {}
  const app = Fastify({ bodyLimit: 100 * MB, ...router })
  const reached: string[] = []
  const routes: Array<{ method: string, url: string }> = []
  app.addHook('onRoute', (r) => { for (const m of ([] as string[]).concat(r.method)) routes.push({ method: m, url: r.url }) })
  const publicDir = mkdtempSync(path.join(tmpdir(), 'tat-static-'))
  writeFileSync(path.join(publicDir, 'hello.txt'), 'hello')

  app.get('/early', async () => { reached.push('/early'); return 'early' }) // declared before the plugin
  if (opts.corsAfter !== true) await app.register(cors, { origin: ORIGIN })
  await app.register(helmet)
  await app.register(swagger, { openapi: { components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } } } })
  await app.register(tokenAuth, {
    provider: new SecretTokenAuthProvider({ tokens: [TOKEN, { token: 'reader', scopes: ['read'] }] }),
    global: true,
    exclude: ['/docs', '/docs/*', '/health']
  })
  if (opts.corsAfter === true) await app.register(cors, { origin: ORIGIN })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(fastifyStatic, { root: publicDir, prefix: '/files/' })
  await app.register(websocket)
  await app.register(multipart, { limits: { fileSize: 100 * MB } })
  app.get('/health', async () => ({ ok: true }))
  app.get('/private', async (req) => { reached.push('/private'); return { user: req.user } })
  app.get('/admin', { config: { tokenAuth: { scopes: ['admin'] } } }, async () => { reached.push('/admin'); return 'admin' })
  app.get('/open', { config: { tokenAuth: false } }, async () => 'open')
  app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (m: Buffer) => socket.send(`echo ${m.toString()}`)) })
  app.post('/upload', async (req) => {
    reached.push('/upload')
    let n = 0
    for await (const part of req.parts()) if (part.type === 'file') for await (const c of part.file) n += (c as Buffer).length
    return { n }
  })
  app.register(async (child) => { child.get('/x', async () => { reached.push('/child/x'); return 'x' }) }, { prefix: '/child' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, port: (app.server.address() as { port: number }).port, reached, routes }
}

t.test('every route that is not excluded needs a token, the ones other plugins add included', async (t) => {
  const { app, routes, reached } = await build()
  const open = new Set(['/health', '/docs', '/docs/', '/open'])
  const checked = routes.filter((r) => r.method === 'GET' && !r.url.includes(':') && r.url !== '/ws')
  t.ok(checked.some((r) => r.url.startsWith('/docs/')), 'swagger-ui\'s routes are there')
  t.ok(checked.some((r) => r.url === '/files/*'), 'and @fastify/static\'s')
  for (const { url } of checked) {
    const concrete = url.replace('*', 'hello.txt')
    const res = await app.inject({ url: concrete })
    const excluded = open.has(url) || url.startsWith('/docs/')
    if (excluded) t.not(res.statusCode, 401, `${url}: excluded, public`)
    else t.equal(res.statusCode, 401, `${url}: 401 without a token`)
  }
  t.equal((await app.inject({ url: '/early' })).statusCode, 401, 'a route declared before the plugin is guarded too')
  t.equal((await app.inject({ url: '/early', headers: bearer(TOKEN) })).statusCode, 200)
  t.equal((await app.inject({ url: '/child/x' })).statusCode, 401, 'and one in a child context')
  const file = await app.inject({ url: '/files/hello.txt', headers: bearer(TOKEN) })
  t.equal(file.statusCode, 200, 'a static file with a token')
  t.equal(file.body, 'hello')
  t.equal((await app.inject({ url: '/private', headers: bearer(TOKEN) })).statusCode, 200)
  const scoped = await app.inject({ url: '/admin', headers: bearer('reader') })
  t.equal(scoped.statusCode, 403, 'scopes keep working per route')
  t.match(scoped.headers['www-authenticate'], /error="insufficient_scope", scope="admin"/)
  t.same(reached.sort(), ['/early', '/private'], 'no guarded handler ran without a good token')
})

t.test('the 404 handler: 401 without a token (route names do not leak), 404 with one', async (t) => {
  const { app } = await build()
  const without = await app.inject({ url: '/no/such/route' })
  t.equal(without.statusCode, 401)
  t.equal(without.headers['www-authenticate'], 'Bearer realm="api"')
  t.equal((await app.inject({ url: '/no/such/route', headers: bearer('bad') })).statusCode, 401)
  const withToken = await app.inject({ url: '/no/such/route', headers: bearer(TOKEN) })
  t.equal(withToken.statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/private' })).statusCode, 401, 'an unknown method on a known path too')
})

for (const lenientRouter of [false, true]) {
  t.test(`no path trick reaches a guarded handler without a token (raw requests; ${lenientRouter ? 'ignoreTrailingSlash, ignoreDuplicateSlashes, caseSensitive false' : 'default router'})`, async (t) => {
    const { port, reached } = await build({ lenientRouter })
    const tricks = [
      '/docs/../private', '/docs/%2e%2e/private', '/docs/..%2fprivate', '//private', '/%2Fprivate', '/%2fprivate', '/PRIVATE', '/Private',
      '/private/', '/./private', '/private%00', '/private%20', '/priv%61te', '/private?x=1', '/private#x', '/health/../private',
      '/docs/static/../../private', '/files/../private', '/files/%2e%2e/private', '/child/../private', '/open/../private', '/private;x',
      '/admin/', '/ADMIN', '/docs/json/../../admin', '/health/', '/healthz', '/docs-private', '/early/', '/child//x'
    ]
    for (const trick of tricks) {
      const res = await rawRequest(port, `GET ${trick}`)
      t.ok(res.status >= 400 || res.status === 200, `${trick}: ${res.status}`)
      if (res.status === 200) t.notMatch(res.body, /"user"|admin|early/, `${trick}: whatever answered 200 is no guarded handler`)
    }
    t.same(reached, [], 'no guarded handler ran')
    const withToken = await rawRequest(port, 'GET /private', bearer(TOKEN))
    t.equal(withToken.status, 200, 'sanity: the same raw request with a token reaches it')
    if (lenientRouter) t.equal((await rawRequest(port, 'GET //PRIVATE/', bearer(TOKEN))).status, 200, 'sanity: the lenient router does route //PRIVATE/ to /private')
  })
}

t.test('CORS: preflights pass, cross-origin requests are guarded, 401 and 403 carry the CORS headers', async (t) => {
  for (const corsAfter of [false, true]) {
    const { app } = await build({ corsAfter })
    const when = corsAfter ? 'cors after the plugin' : 'cors before the plugin'
    const pre = await app.inject({ method: 'OPTIONS', url: '/private', headers: { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } })
    t.equal(pre.statusCode, 204, `${when}: the preflight passes`)
    t.equal(pre.headers['access-control-allow-origin'], ORIGIN)
    const no = await app.inject({ url: '/private', headers: { origin: ORIGIN } })
    t.equal(no.statusCode, 401, `${when}: the actual request needs a token`)
    t.equal(no.headers['access-control-allow-origin'], ORIGIN, `${when}: the 401 carries Access-Control-Allow-Origin`)
    t.equal(no.headers['www-authenticate'], 'Bearer realm="api"')
    const forbidden = await app.inject({ url: '/admin', headers: { origin: ORIGIN, ...bearer('reader') } })
    t.equal(forbidden.statusCode, 403)
    t.equal(forbidden.headers['access-control-allow-origin'], ORIGIN, `${when}: so does the 403`)
    const ok = await app.inject({ url: '/private', headers: { origin: ORIGIN, ...bearer(TOKEN) } })
    t.equal(ok.statusCode, 200)
  }
  const { app } = await build()
  const notFound = await app.inject({ url: '/nope', headers: { origin: ORIGIN } })
  t.equal(notFound.statusCode, 401)
  t.equal(notFound.headers['access-control-allow-origin'], ORIGIN, 'with cors registered first, the 404 handler\'s 401 carries it too')
})

t.test('helmet\'s headers are on the 401', async (t) => {
  const { app } = await build()
  const res = await app.inject({ url: '/private' })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.ok(res.headers['content-security-policy'])
})

t.test('websocket: the upgrade is authenticated with the bearer token before the socket opens', async (t) => {
  const { port } = await build()
  const refused = await new Promise<{ status: number, challenge: string | undefined, opened: boolean }>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
    ws.on('open', () => { ws.close(); resolve({ status: 101, challenge: undefined, opened: true }) })
    ws.on('unexpected-response', (_req, res) => { resolve({ status: res.statusCode ?? 0, challenge: res.headers['www-authenticate'], opened: false }); res.resume(); ws.terminate() })
    ws.on('error', () => {})
  })
  t.same(refused, { status: 401, challenge: 'Bearer realm="api"', opened: false }, 'no token: 401, the socket never opens')
  const echo = await new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: bearer(TOKEN) })
    ws.on('open', () => ws.send('hi'))
    ws.on('message', (m) => { resolve(m.toString()); ws.close() })
    ws.on('error', reject)
  })
  t.equal(echo, 'echo hi', 'with a token: open, and it echoes')
})

t.test('multipart: a 50 MB upload without a token is refused before its body is read', async (t) => {
  const { port, reached } = await build()
  let serverRead = 0
  const result = await new Promise<{ status: number, sentMB: number }>((resolve) => {
    const boundary = 'XBOUNDARY'
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`)
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
    const total = 50 * MB
    let sent = 0
    let status = 0
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/upload',
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + total + tail.length }
    }, (res) => {
      status = res.statusCode ?? 0
      serverRead = (req.socket?.bytesWritten ?? 0)
      res.resume()
      res.on('end', () => { clearInterval(timer); resolve({ status, sentMB: sent / MB }) })
    })
    req.on('error', () => { clearInterval(timer); resolve({ status, sentMB: sent / MB }) })
    req.write(head)
    const chunk = Buffer.alloc(256 * 1024, 97)
    const timer = setInterval(() => {
      if (req.destroyed || sent >= total) { clearInterval(timer); if (!req.destroyed) req.end(tail); return }
      req.write(chunk)
      sent += chunk.length
    }, 10)
  })
  t.equal(result.status, 401, 'answered 401')
  t.ok(result.sentMB < 10, `the client stopped early: the server closed the connection (${result.sentMB.toFixed(1)} MB sent of 50)`)
  t.ok(serverRead < 10 * MB, 'the answer came before the upload')
  t.same(reached, [], 'the upload handler never ran')
})

t.test('beside @fastify/auth: fastify.auth([fastify.bearer, other]) composes the renamed guard', async (t) => {
  const fastifyAuth = (await import('@fastify/auth' as string)).default
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyAuth)
  await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: [TOKEN] }), authDecorator: 'bearer' })
  const anyApp = app as unknown as { auth: (fns: unknown[]) => never, bearer: unknown }
  const apiKey = async (req: { headers: Record<string, unknown> }): Promise<void> => { if (req.headers['x-api-key'] !== 'k') throw new Error('no api key') }
  app.get('/either', { preHandler: anyApp.auth([anyApp.bearer, apiKey]) }, async () => 'ok')
  t.equal((await app.inject({ url: '/either', headers: bearer(TOKEN) })).statusCode, 200, 'the bearer token')
  t.equal((await app.inject({ url: '/either', headers: { 'x-api-key': 'k' } })).statusCode, 200, 'or the other method')
  t.equal((await app.inject({ url: '/either' })).statusCode, 401, 'neither: 401')
})

t.test('the OpenAPI document: guarded routes require the bearer scheme, excluded ones nothing', async (t) => {
  const { app } = await build()
  const doc = (await app.inject({ url: '/docs/json' })).json() as { paths: Record<string, Record<string, { security?: unknown }>>, components: unknown }
  t.same(doc.paths['/private'].get.security, [{ bearerAuth: [] }])
  t.same(doc.paths['/health'].get.security, [])
  t.same(doc.paths['/open'].get.security, [])
  t.match(doc.components, { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } })
})

t.test('global mode in a child context guards that context only', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.get('/public/x', async () => 'public')
  await app.register(async (api) => {
    await api.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: [TOKEN] }), global: true })
    api.get('/x', async (req) => ({ user: req.user?.username }))
    // An unknown path under /api goes to this context's 404 handler, so it is guarded too.
    api.setNotFoundHandler((req, reply) => reply.code(404).send({ message: 'not found' }))
  }, { prefix: '/api' })
  app.get('/public/y', async () => 'public')
  t.equal((await app.inject({ url: '/api/x' })).statusCode, 401, '/api: guarded')
  t.equal((await app.inject({ url: '/api/x', headers: bearer(TOKEN) })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/nope' })).statusCode, 401, 'an unknown /api path without a token: 401')
  t.equal((await app.inject({ url: '/api/nope', headers: bearer(TOKEN) })).statusCode, 404)
  for (const url of ['/public/x', '/public/y']) t.equal((await app.inject({ url })).statusCode, 200, `${url}: not guarded`)
  t.equal((await app.inject({ url: '/nope' })).statusCode, 404, 'the root 404 is not the plugin\'s')
})

t.test('global mode options', async (t) => {
  const provider = new SecretTokenAuthProvider({ tokens: [TOKEN] })
  await t.rejects(async () => { await Fastify().register(tokenAuth, { provider, exclude: ['/docs/*'] }) },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'exclude', message: /exclude is for global mode: set global: true/ })
  await t.rejects(async () => { await Fastify().register(tokenAuth, { provider, global: true, exclude: ['docs'] }) },
    { option: 'exclude[0]', message: /must be a route URL, exact \('\/health'\) or ending in \* for a prefix/ })
  await t.rejects(async () => { await Fastify().register(tokenAuth, { provider, global: true, exclude: ['/a*b'] }) }, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'exclude[0]' })
  await t.rejects(async () => { await Fastify().register(tokenAuth, { provider, global: 'yes' as never }) }, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'global' })
})
