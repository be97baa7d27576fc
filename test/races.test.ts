// Races: concurrent logins, requests racing a revocation (warm and cold cache), and a deactivation
// racing requests and logins. What counts is what a client sees: no token is accepted once its
// revocation has returned.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { createDatabase } from '../lib/store/database.js'
import { FAST_PASSWORD_PARAMS, freshDatabase, query, requirePostgres } from './helpers/db.js'
import { TcpProxy } from './helpers/tcp-proxy.js'
import { bearer } from './helpers/http.js'

const PASSWORD = 'correct horse battery staple'

async function appOn (t: Test, opts: TokenAuthOptions): Promise<FastifyInstance> {
  const app = Fastify()
  // A queue long enough for 200 logins at once, and no per-address limit of unknown tokens (the
  // streams below send hundreds of revoked ones from one address): what is raced here is the store.
  await app.register(tokenAuth, { service: { passwordParams: FAST_PASSWORD_PARAMS, passwordQueue: 1000 }, invalidTokens: false, ...opts })
  app.get('/me', { preHandler: app.auth }, async (req) => ({ id: req.user?.id }))
  await app.ready()
  t.teardown(() => app.close())
  return app
}

const me = async (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> => await app.inject({ url: '/me', headers: bearer(token) })
const login = async (app: FastifyInstance, username = 'alice'): Promise<LightMyRequestResponse> =>
  await app.inject({ method: 'POST', url: '/login', payload: { username, password: PASSWORD } })

t.test('200 concurrent logins of 200 users from 200 addresses: 200 distinct tokens, all working', async (t) => {
  const { database, service } = await freshDatabase(t)
  const names = Array.from({ length: 200 }, (_, i) => `user${i}`)
  const ids = new Map<string, unknown>()
  for (const name of names) ids.set(name, (await service.createUser(name, PASSWORD)).id)
  const app = await appOn(t, { database })
  const answers = await Promise.all(names.map(async (name, i) =>
    await app.inject({ method: 'POST', url: '/login', payload: { username: name, password: PASSWORD }, remoteAddress: `10.1.${i >> 8}.${i & 255}` })))
  t.same([...new Set(answers.map((r) => r.statusCode))], [200], 'every login answered 200')
  const tokens = answers.map((r) => r.json().token as string)
  t.equal(new Set(tokens).size, 200, '200 distinct tokens')
  const checks = await Promise.all(tokens.map(async (token) => await me(app, token)))
  t.ok(checks.every((r, i) => r.statusCode === 200 && r.json().id === ids.get(names[i])), 'every token works, for its own user')
  const [{ count }] = await query<{ count: string }>(database, 'select count(*)::int as count from token_auth_tokens')
  t.equal(Number(count), 200, '200 token rows')
})

t.test('200 concurrent tokens issued for one user: 200 distinct tokens, all working', async (t) => {
  const { database, service } = await freshDatabase(t, { service: { passwordParams: FAST_PASSWORD_PARAMS, maxTokensPerUser: false } })
  const user = await service.createUser('alice', PASSWORD)
  const app = await appOn(t, { database })
  const issued = await Promise.all(Array.from({ length: 200 }, async (_, i) => await service.issueToken(user.id, { name: `device ${i}` })))
  t.equal(new Set(issued.map((x) => x.token)).size, 200, '200 distinct tokens')
  const checks = await Promise.all(issued.map(async ({ token }) => await me(app, token)))
  t.ok(checks.every((r) => r.statusCode === 200 && r.json().id === user.id), 'every token works')
  const [{ count }] = await query<{ count: string }>(database, 'select count(*)::int as count from token_auth_tokens where user_id = $1', [user.id])
  t.equal(Number(count), 200, '200 token rows')
})

/** Fires requests with `token` until `until` resolves, then a few more; records start time and status. */
async function stream (app: FastifyInstance, token: string, until: Promise<number>): Promise<Array<{ start: number, status: number }>> {
  const results: Array<Promise<{ start: number, status: number }>> = []
  const state = { done: false }
  let extra = 0
  until.then(() => { state.done = true }, () => {})
  while (!state.done || extra++ < 200) {
    const start = performance.now()
    results.push(me(app, token).then((r) => ({ start, status: r.statusCode })))
    await new Promise((resolve) => setImmediate(resolve))
  }
  return await Promise.all(results)
}

t.test('requests racing a revocation: none started after the revocation returned is accepted', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('alice', PASSWORD)
  const app = await appOn(t, { database, routes: false })
  const svc = app.tokenAuth.service!
  for (const how of ['revokeToken', 'revokeTokenByHash (what /logout does)', 'revokeAllTokens'] as const) {
    const issued = await svc.issueToken(user.id)
    t.equal((await me(app, issued.token)).statusCode, 200, `${how}: the token works (and is cached)`)
    const revoked = (async () => {
      await sleep(20)
      if (how === 'revokeToken') await svc.revokeToken(issued.id)
      else if (how === 'revokeAllTokens') await svc.revokeAllTokens(user.id)
      else await svc.revokeTokenByHash((await import('../lib/store/token-format.js')).hashToken(issued.token))
      return performance.now()
    })()
    const results = await stream(app, issued.token, revoked)
    const revokedAt = await revoked
    const after = results.filter((r) => r.start > revokedAt)
    const before = results.filter((r) => r.start <= revokedAt)
    t.ok(before.some((r) => r.status === 200), `${how}: ${before.length} requests before the revocation returned, some accepted`)
    t.ok(after.length >= 200, `${how}: ${after.length} requests started after it returned`)
    t.same([...new Set(after.map((r) => r.status))], [401], `${how}: none of them accepted`)
    t.notOk(results.some((r) => r.status >= 500), `${how}: no 5xx`)
  }
})

t.test('cold cache: a lookup in flight while the revocation commits is not cached (epoch guard)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, service } = await freshDatabase(t)
  const user = await service.createUser('alice', PASSWORD)
  const u = new URL(url!)
  const proxy = new TcpProxy({ host: u.hostname, port: Number(u.port || 5432) })
  await proxy.up()
  t.teardown(() => proxy.down())
  // The provider looks tokens up through the proxy; revocations go straight to the database, through
  // the service the provider listens to (as the plugin wires them).
  const proxied = await createDatabase(proxy.urlFor(url!), { max: 1 })
  t.teardown(() => proxied.close())
  const provider = new DrizzleTokenAuthProvider({ db: proxied.db, service, lastUsedInterval: false, queryTimeout: 10_000 })
  const app = await appOn(t, { provider })
  const other = await service.issueToken(user.id)
  t.equal((await me(app, other.token)).statusCode, 200, 'the proxied connection is open and prepared')

  const issued = await service.issueToken(user.id)
  proxy.holdResponses()
  const inflight = me(app, issued.token) // cold: a lookup goes out, runs, and its answer is held
  await sleep(200)
  await service.revokeToken(issued.id) // commits; the provider's cache is told
  proxy.releaseResponses()
  const first = await inflight
  t.ok(first.statusCode === 200 || first.statusCode === 401, `the request that started before the revocation: ${first.statusCode}`)
  t.equal(first.statusCode, 200, 'it did see the token (the lookup ran before the commit): the race really happened')
  for (let i = 0; i < 3; i++) {
    t.equal((await me(app, issued.token)).statusCode, 401, 'a request after the revocation: 401, the stale answer was not cached')
  }
  t.equal((await me(app, other.token)).statusCode, 200, 'other tokens unaffected')
})

t.test('deactivating a user while requests and logins are in flight leaves no token usable', async (t) => {
  const { database, service } = await freshDatabase(t)
  const user = await service.createUser('alice', PASSWORD)
  // 90 logins at once, unthrottled: a queue long enough that none is refused as a flood (kdf-queue.ts).
  const app = await appOn(t, { database, routes: { throttle: false }, service: { passwordParams: FAST_PASSWORD_PARAMS, passwordQueue: 1000 } })
  const svc = app.tokenAuth.service!
  const warm = await Promise.all(Array.from({ length: 10 }, async () => (await svc.issueToken(user.id)).token))
  const cold = await Promise.all(Array.from({ length: 10 }, async () => (await svc.issueToken(user.id)).token))
  for (const token of warm) t.equal((await me(app, token)).statusCode, 200)

  const requests: Array<Promise<LightMyRequestResponse>> = []
  const logins: Array<Promise<LightMyRequestResponse>> = []
  let deactivatedAt = Infinity
  // Logins start first; the deactivation starts as soon as the first of them has a token, so the
  // others are issued before, during and after it.
  for (let i = 0; i < 40; i++) logins.push(login(app))
  const deactivated = (async () => {
    await Promise.race(logins)
    await svc.deactivateUser('alice')
    deactivatedAt = performance.now()
  })()
  const lateStarts: Array<Promise<{ status: number }>> = []
  for (let i = 0; i < 400; i++) {
    const token = i % 2 === 0 ? warm[i % warm.length] : cold[i % cold.length]
    const p = me(app, token)
    requests.push(p)
    if (performance.now() > deactivatedAt) lateStarts.push(p.then((r) => ({ status: r.statusCode })))
    if (i % 8 === 0) logins.push(login(app))
    await new Promise((resolve) => setImmediate(resolve))
  }
  await deactivated
  const answers = await Promise.all(requests)
  const loginAnswers = await Promise.all(logins)
  t.notOk(answers.some((r) => r.statusCode >= 500) || loginAnswers.some((r) => r.statusCode >= 500), 'no 5xx')
  t.ok((await Promise.all(lateStarts)).every((r) => r.status === 401), `none of the ${lateStarts.length} requests started after deactivation returned was accepted`)
  const issuedByLogins = loginAnswers.filter((r) => r.statusCode === 200).map((r) => r.json().token as string)
  t.ok(loginAnswers.every((r) => r.statusCode === 200 || r.statusCode === 401), 'logins: 200 before, 401 after')
  t.comment(`${issuedByLogins.length} of ${loginAnswers.length} concurrent logins were issued a token`)
  for (const token of [...warm, ...cold, ...issuedByLogins]) {
    const res = await me(app, token)
    if (res.statusCode !== 401) t.fail(`a token is still usable after deactivation: ${res.statusCode}`)
  }
  t.pass(`all ${warm.length + cold.length + issuedByLogins.length} tokens refused`)
  t.equal((await login(app)).statusCode, 401, 'the user cannot log in')
  t.same(await query(database, 'select id from token_auth_tokens where user_id = $1', [user.id]), [], 'no token rows left')
})
