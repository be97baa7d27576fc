// Failed-login throttling (issue 5 item 2): per account and per IP, 429 with Retry-After, bounded
// lockout, successes not counted, bursts held to the limit, switchable off, beside the app's own
// @fastify/rate-limit.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import tokenAuth from '../lib/index.js'
import type { LoginRoutesOptions } from '../lib/routes/options.js'
import { DEFAULT_THROTTLE, throttleOptions } from '../lib/routes/throttle.js'
import { FAST_PASSWORD_PARAMS, freshDatabase } from './helpers/db.js'

const { database, service } = await freshDatabase(t)
const PASSWORD = 'correct horse battery staple'
for (const name of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan']) await service.createUser(name, PASSWORD)

async function build (routes: LoginRoutesOptions = {}, before?: (app: FastifyInstance) => Promise<void>): Promise<FastifyInstance> {
  const app = Fastify()
  if (before !== undefined) await before(app)
  await app.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes })
  app.get('/me', { preHandler: app.auth }, async (request) => ({ user: request.user }))
  await app.ready()
  return app
}

const login = (app: FastifyInstance, username: string, password: string, extra: Partial<InjectOptions> = {}) =>
  app.inject({ method: 'POST', url: '/login', payload: { username, password }, ...extra })
const from = (remoteAddress: string): Partial<InjectOptions> => ({ remoteAddress })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const statuses = (list: LightMyRequestResponse[]) => list.map((r) => r.statusCode)

function isThrottled (t: Test, res: LightMyRequestResponse, maxRetryAfter: number): void {
  t.equal(res.statusCode, 429)
  t.same(res.json(), {
    statusCode: 429,
    code: 'FST_TOKEN_AUTH_LOGIN_THROTTLED',
    error: 'Too Many Requests',
    message: 'Too many failed login attempts, retry later'
  })
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= maxRetryAfter, `Retry-After ${retryAfter} in [1, ${maxRetryAfter}]`)
  t.equal(res.headers['cache-control'], undefined)
}

t.test('defaults: 10 failures per account per 15 minutes, then 429 with Retry-After, even for the right password', async (t) => {
  t.same(throttleOptions(undefined, 'routes.throttle'), { perAccount: 10, perIp: 100, timeWindow: 900_000 })
  t.same(DEFAULT_THROTTLE, { perAccount: 10, perIp: 100, timeWindow: 900_000 })
  const app = await build()
  t.teardown(() => app.close())
  for (let i = 0; i < 10; i++) {
    // Spread over addresses: this is the account counter, not the IP one.
    t.equal((await login(app, i % 2 === 0 ? 'alice' : 'ALICE', 'wrong', from(`10.0.0.${i + 1}`))).statusCode, 401)
  }
  isThrottled(t, await login(app, 'alice', 'wrong', from('10.0.1.1')), 900)
  isThrottled(t, await login(app, 'ａｌｉｃｅ', PASSWORD, from('10.0.1.2')), 900)
  t.equal((await login(app, 'bob', PASSWORD, from('10.0.1.1'))).statusCode, 200, 'other accounts are not affected')
})

t.test('an unknown account is throttled exactly like a known one (no enumeration)', async (t) => {
  const app = await build({ throttle: { perAccount: 3 } })
  t.teardown(() => app.close())
  const known: number[] = []
  const unknown: number[] = []
  const bodies = new Set<string>()
  for (let i = 0; i < 5; i++) {
    const a = await login(app, 'carol', 'wrong')
    const b = await login(app, 'nobody-here', 'wrong')
    known.push(a.statusCode)
    unknown.push(b.statusCode)
    if (a.statusCode === 429) bodies.add(a.body).add(b.body)
  }
  t.same(known, [401, 401, 401, 429, 429])
  t.same(unknown, known)
  t.equal(bodies.size, 1)
})

t.test('successful logins are not counted', async (t) => {
  const app = await build({ throttle: { perAccount: 3, perIp: 5 } })
  t.teardown(() => app.close())
  for (let i = 0; i < 25; i++) t.equal((await login(app, 'dave', PASSWORD)).statusCode, 200)
  t.equal((await login(app, 'dave', 'wrong')).statusCode, 401)
  t.equal((await login(app, 'dave', 'wrong')).statusCode, 401)
  t.equal((await login(app, 'dave', PASSWORD)).statusCode, 200, 'two failures and a success: still in')
  t.equal((await login(app, 'dave', 'wrong')).statusCode, 401)
  isThrottled(t, await login(app, 'dave', PASSWORD), 900)
})

t.test('a lockout ends with its window, however long the attacker keeps trying', async (t) => {
  const window = 1500
  const app = await build({ throttle: { perAccount: 3, timeWindow: window } })
  t.teardown(() => app.close())
  const started = Date.now()
  for (let i = 0; i < 3; i++) t.equal((await login(app, 'erin', 'wrong', from('192.0.2.66'))).statusCode, 401)
  isThrottled(t, await login(app, 'erin', PASSWORD, from('198.51.100.7')), 2)
  // The attacker hammers through the window: refused attempts count nothing and extend nothing.
  let refused = 0
  while (Date.now() - started < window - 200) {
    if ((await login(app, 'erin', 'wrong', from('192.0.2.66'))).statusCode === 429) refused++
    await sleep(50)
  }
  t.ok(refused > 5, `${refused} attempts refused during the window`)
  await sleep(Math.max(0, started + window + 100 - Date.now()))
  const back = await login(app, 'erin', PASSWORD, from('198.51.100.7'))
  t.equal(back.statusCode, 200, 'the owner gets in once the window is over')
  t.ok(Date.now() - started < window * 2, 'within the window, not after a second one')
})

t.test('per IP: failures over many accounts from one address (IPv6 per /64)', async (t) => {
  const app = await build({ throttle: { perAccount: 100, perIp: 5 } })
  t.teardown(() => app.close())
  const names = ['u1', 'u2', 'u3', 'u4', 'u5']
  for (const name of names) t.equal((await login(app, name, 'wrong', from('203.0.113.9'))).statusCode, 401)
  isThrottled(t, await login(app, 'u6', 'wrong', from('203.0.113.9')), 900)
  isThrottled(t, await login(app, 'frank', PASSWORD, from('203.0.113.9')), 900)
  t.equal((await login(app, 'frank', PASSWORD, from('203.0.113.10'))).statusCode, 200, 'another address is not affected')
  t.equal((await login(app, 'u7', 'wrong', from('203.0.113.10'))).statusCode, 401)

  for (let i = 1; i <= 5; i++) t.equal((await login(app, `v${i}`, 'wrong', from(`2001:db8:1:2::${i}`))).statusCode, 401)
  isThrottled(t, await login(app, 'grace', PASSWORD, from('2001:db8:1:2:ffff::1')), 900)
  t.equal((await login(app, 'grace', PASSWORD, from('2001:db8:1:3::1'))).statusCode, 200, 'another /64 is not affected')
  // An invalid username (can never be an account) still counts against the address.
  const invalid = await build({ throttle: { perIp: 2 } })
  t.teardown(() => invalid.close())
  t.equal((await login(invalid, ' padded', 'wrong', from('192.0.2.1'))).statusCode, 401)
  t.equal((await login(invalid, 'x\u0000y', 'wrong', from('192.0.2.1'))).statusCode, 401)
  isThrottled(t, await login(invalid, 'heidi', PASSWORD, from('192.0.2.1')), 900)
})

t.test('a concurrent burst of wrong passwords gets exactly the limit, a burst of good logins all succeed', async (t) => {
  const app = await build({ throttle: { perAccount: 5, perIp: 1000 } })
  t.teardown(() => app.close())
  const bad = await Promise.all(Array.from({ length: 40 }, () => login(app, 'ivan', 'wrong')))
  t.equal(statuses(bad).filter((s) => s === 401).length, 5, 'exactly 5 wrong passwords were checked')
  t.equal(statuses(bad).filter((s) => s === 429).length, 35)

  const tight = await build({ throttle: { perAccount: 3, perIp: 4 } })
  t.teardown(() => tight.close())
  const good = await Promise.all(Array.from({ length: 40 }, () => login(tight, 'heidi', PASSWORD)))
  t.same(statuses(good), Array(40).fill(200), 'successes count nothing, even 40 at once')
  t.equal(new Set(good.map((r) => r.json().token)).size, 40)
  const mixed = await Promise.all(Array.from({ length: 20 }, (_, i) => login(tight, 'heidi', i % 2 === 0 ? PASSWORD : 'wrong', from('192.0.2.200'))))
  t.equal(statuses(mixed).filter((s) => s === 401).length, 3, 'the account limit (3) holds in a mixed burst')
  t.notOk(statuses(mixed).some((s) => s >= 500))
})

t.test('throttle: false turns it off', async (t) => {
  const app = await build({ throttle: false })
  t.teardown(() => app.close())
  const answers = []
  for (let i = 0; i < 30; i++) answers.push((await login(app, 'alice2', 'wrong')).statusCode)
  t.same(answers, Array(30).fill(401))
  t.same(throttleOptions(false, 'routes.throttle'), false)
})

t.test('beside the app\'s own @fastify/rate-limit', async (t) => {
  // The app limits every route (global) and registers first: both plugins work, no clash.
  const app = await build({ throttle: { perAccount: 2 } }, async (app) => {
    await app.register(rateLimit, { global: true, max: 1000, timeWindow: 60_000 })
  })
  t.teardown(() => app.close())
  const first = await login(app, 'bob', 'wrong')
  t.equal(first.statusCode, 401)
  t.equal(first.headers['x-ratelimit-limit'], '1000', 'the app\'s global limit applies to /login too')
  t.equal((await login(app, 'bob', 'wrong')).statusCode, 401)
  isThrottled(t, await login(app, 'bob', PASSWORD), 900)
  t.equal((await login(app, 'carol', PASSWORD)).statusCode, 200)

  // And registered after the plugin, in the same context.
  const later = Fastify()
  t.teardown(() => later.close())
  await later.register(tokenAuth, { database, service: { passwordParams: FAST_PASSWORD_PARAMS }, routes: { throttle: { perAccount: 1 } } })
  await later.register(rateLimit, { global: false })
  later.get('/limited', { config: { rateLimit: { max: 1, timeWindow: 60_000 } } }, async () => 'ok')
  t.equal((await later.inject('/limited')).statusCode, 200)
  t.equal((await later.inject('/limited')).statusCode, 429)
  t.equal((await login(later, 'dave', 'wrong')).statusCode, 401)
  t.equal((await login(later, 'dave', 'wrong')).statusCode, 429)
})

t.test('the counter store fails (e.g. the app\'s Redis is down): 503 with Retry-After, never 500', async (t) => {
  const broken = { read: false, incr: false }
  class FlakyStore {
    readonly #counts = new Map<string, number>()
    read (key: string, cb: (err: Error | null, res?: { current: number, ttl: number }) => void): void {
      if (broken.read) cb(new Error('store read failed'))
      else cb(null, { current: this.#counts.get(key) ?? 0, ttl: 60_000 })
    }

    incr (key: string, cb: (err: Error | null, res?: { current: number, ttl: number }) => void): void {
      if (broken.incr) return cb(new Error('store incr failed'))
      const n = (this.#counts.get(key) ?? 0) + 1
      this.#counts.set(key, n)
      cb(null, { current: n, ttl: 60_000 })
    }

    child (): FlakyStore { return new FlakyStore() }
  }
  const app = await build({ throttle: { perAccount: 2 } }, async (app) => {
    await app.register(rateLimit, { global: false, store: FlakyStore as never })
  })
  t.teardown(() => app.close())
  t.equal((await login(app, 'alice', 'wrong')).statusCode, 401, 'the app\'s store counts the failures')
  t.equal((await login(app, 'alice', 'wrong')).statusCode, 401)
  isThrottled(t, await login(app, 'alice', PASSWORD), 60)
  broken.read = true
  for (const res of [await login(app, 'bob', PASSWORD), await login(app, 'bob', 'wrong')]) {
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
    t.equal(res.headers['retry-after'], '5')
    t.notMatch(res.body, /store/)
  }
  broken.read = false
  broken.incr = true
  t.equal((await login(app, 'bob', 'wrong')).statusCode, 503, 'a failure that cannot be counted is not answered 401')
  t.equal((await login(app, 'bob', PASSWORD)).statusCode, 200, 'a success needs no counting')
  broken.incr = false
  t.equal((await login(app, 'bob', 'wrong')).statusCode, 401, 'nothing was left reserved')
  t.equal((await login(app, 'bob', 'wrong')).statusCode, 401)
  t.equal((await login(app, 'bob', 'wrong')).statusCode, 429)
})

t.test('the app\'s allowList (on its own @fastify/rate-limit) exempts addresses from the login throttle', async (t) => {
  const app = await build({ throttle: { perAccount: 2, perIp: 2 } }, async (app) => {
    await app.register(rateLimit, { global: false, allowList: (request) => request.ip === '10.9.9.9' })
  })
  t.teardown(() => app.close())
  const trusted: number[] = []
  for (let i = 0; i < 6; i++) trusted.push((await login(app, 'frank', 'wrong', from('10.9.9.9'))).statusCode)
  t.same(trusted, Array(6).fill(401))
  t.equal((await login(app, 'frank', PASSWORD, from('10.9.9.9'))).statusCode, 200)
  t.equal((await login(app, 'frank', 'wrong', from('10.1.1.1'))).statusCode, 401)
  t.equal((await login(app, 'frank', 'wrong', from('10.1.1.1'))).statusCode, 401)
  t.equal((await login(app, 'frank', 'wrong', from('10.1.1.1'))).statusCode, 429)
})

t.test('one limit alone; a flood of waiting attempts is cut off', async (t) => {
  const ipOnly = await build({ throttle: { perAccount: false, perIp: 2 } })
  t.teardown(() => ipOnly.close())
  t.same(statuses([
    await login(ipOnly, 'grace', 'wrong'), await login(ipOnly, 'heidi', 'wrong'), await login(ipOnly, 'ivan', PASSWORD)
  ]), [401, 401, 429])

  const accountOnly = await build({ throttle: { perAccount: 1, perIp: false } })
  t.teardown(() => accountOnly.close())
  // 1 runs, 1,000 wait for it, the rest are refused at once; then the waiting ones learn the account is spent.
  const flood = await Promise.all(Array.from({ length: 1010 }, () => login(accountOnly, 'carol', 'wrong')))
  t.equal(statuses(flood).filter((s) => s === 401).length, 1)
  t.equal(statuses(flood).filter((s) => s === 429).length, 1009)
  t.equal((await login(accountOnly, 'dave', PASSWORD)).statusCode, 200, 'other accounts unaffected')
})
