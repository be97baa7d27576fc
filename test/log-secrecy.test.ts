// Secrets stay secret: the full trace-level log of a run of logins (good, bad, malformed, throttled),
// authenticated and rejected requests, logouts, and a store outage contains no token and no password,
// and no error response echoes one.
import t from 'tap'
import Fastify, { type InjectOptions, type LightMyRequestResponse } from 'fastify'
import tokenAuth, { SecretTokenAuthProvider } from '../lib/index.js'
import { createDatabase } from '../lib/store/database.js'
import { generateToken, hashToken } from '../lib/store/token-format.js'
import { FAST_PASSWORD_PARAMS, freshDatabase, requirePostgres } from './helpers/db.js'
import { bearer } from './helpers/http.js'

const PASSWORD = 'correct horse battery staple'
const WRONG = 'Tr0ub4dor&3-wrong'
const SERVICE_SECRET = 'service-secret-0123456789abcdef'

t.test('no token and no password in the logs or in error responses', async (t) => {
  if (!requirePostgres(t)) return
  const { url, service } = await freshDatabase(t)
  await service.createUser('alice', PASSWORD)
  await service.createUser('bob', PASSWORD)
  const database = await createDatabase(url, { max: 3 })
  t.teardown(() => database.close())
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'trace', stream: { write (line: string) { lines.push(line) } } } })
  await app.register(tokenAuth, {
    database,
    provider: new SecretTokenAuthProvider({ tokens: [SERVICE_SECRET] }),
    service: { passwordParams: FAST_PASSWORD_PARAMS },
    routes: { throttle: { perAccount: 3, perIp: 1000, timeWindow: 60_000 } }
  })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ id: req.user?.id }))
  app.get('/admin', { config: { tokenAuth: { scopes: ['admin'] } } }, async () => ({ ok: true }))
  await app.ready()
  t.teardown(() => app.close())

  const responses: LightMyRequestResponse[] = []
  const send = async (opts: InjectOptions): Promise<LightMyRequestResponse> => {
    const res = await app.inject(opts)
    responses.push(res)
    return res
  }
  const login = async (username: string, password: unknown): Promise<LightMyRequestResponse> =>
    await send({ method: 'POST', url: '/login', payload: { username, password } })

  const secrets: string[] = [PASSWORD, WRONG, SERVICE_SECRET]
  const ok = await login('alice', PASSWORD)
  t.equal(ok.statusCode, 200)
  const token = ok.json().token as string
  const second = (await login('alice', PASSWORD)).json().token as string
  secrets.push(token, second)
  const unknown = generateToken()
  secrets.push(unknown)
  const badChecksum = token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a')
  secrets.push(badChecksum)

  // Failed logins: wrong password, unknown user, bad types, until throttled.
  for (let i = 0; i < 4; i++) await login('bob', WRONG)
  t.equal((await login('bob', WRONG)).statusCode, 429, 'throttled')
  await login('nobody', WRONG)
  await login('alice', 12345)
  await send({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: `{"username":"alice","password":"${WRONG}"` })
  await send({ method: 'POST', url: '/login', headers: { 'content-type': 'text/plain' }, payload: `username=alice&password=${WRONG}` })
  await send({ method: 'POST', url: '/login', payload: { username: 'alice', password: WRONG, extra: WRONG } })

  // Authenticated and rejected requests.
  t.equal((await send({ url: '/me', headers: bearer(token) })).statusCode, 200)
  t.equal((await send({ url: '/me', headers: bearer(SERVICE_SECRET) })).statusCode, 200)
  t.equal((await send({ url: '/admin', headers: bearer(token) })).statusCode, 403)
  t.equal((await send({ url: '/me', headers: bearer(unknown) })).statusCode, 401)
  t.equal((await send({ url: '/me', headers: bearer(badChecksum) })).statusCode, 401)
  t.equal((await send({ url: '/me', headers: { authorization: `Bearer ${token} ${token}` } })).statusCode, 400)
  t.equal((await send({ url: '/me', headers: { authorization: `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` } })).statusCode, 401)
  secrets.push(Buffer.from(`alice:${PASSWORD}`).toString('base64'))
  // A token in the URL is refused (RFC 6750 §2.3 is not supported), but Fastify's request log line
  // carries the URL, so a client that sends one leaks it there: that one is not in `secrets`, and the
  // README tells apps to strip query strings from their logs. The response does not echo it.
  const inUrl = generateToken()
  const urlRes = await send({ url: `/me?access_token=${inUrl}` })
  t.equal(urlRes.statusCode, 401)
  t.notOk(urlRes.body.includes(inUrl), 'a token in the URL is not echoed')

  // Logouts.
  t.equal((await send({ method: 'POST', url: '/logout', headers: bearer(token) })).statusCode, 204)
  t.equal((await send({ url: '/me', headers: bearer(token) })).statusCode, 401, 'revoked')
  t.equal((await send({ method: 'POST', url: '/logout', headers: bearer(SERVICE_SECRET) })).statusCode, 403)
  t.equal((await send({ method: 'POST', url: '/logout/all', headers: bearer(second) })).statusCode, 204)

  // An outage: the provider's and the routes' failures are logged at error level, with their cause.
  const third = (await login('alice', PASSWORD)).json().token as string
  secrets.push(third)
  await database.close()
  const outageToken = generateToken()
  secrets.push(outageToken)
  // Drizzle's "Failed query" errors list the query's parameters: the token hashes must not reach the log either.
  for (const plain of [token, second, third, outageToken]) secrets.push(hashToken(plain))
  t.equal((await send({ url: '/me', headers: bearer(outageToken) })).statusCode, 503)
  t.equal((await login('alice', PASSWORD)).statusCode, 503)
  t.equal((await send({ method: 'POST', url: '/logout', headers: bearer(third) })).statusCode, 503)

  const log = lines.join('')
  t.ok(lines.length > 50, `${lines.length} log lines captured`)
  t.match(log, /token provider failed|unavailable/, 'the outage is logged')
  t.match(log, /login refused/, 'failed logins are logged')
  for (const secret of secrets) {
    // The whole secret, and any 16-character piece of it (a token's random part, a truncated log).
    const pieces = [secret, ...Array.from({ length: Math.max(0, secret.length - 15) }, (_, i) => secret.slice(i, i + 16))]
    const inLog = pieces.find((p) => log.includes(p))
    t.equal(inLog, undefined, `not in the logs: ${secret.slice(0, 6)}…`)
    for (const res of responses.filter((r) => r.statusCode >= 400)) {
      if (pieces.some((p) => res.body.includes(p) || JSON.stringify(res.headers).includes(p))) t.fail(`a ${res.statusCode} response echoes ${secret.slice(0, 6)}…`)
    }
  }
  t.ok(responses.some((r) => r.statusCode === 200 && r.body.includes(token)), 'sanity: the login response does carry the token')
})
