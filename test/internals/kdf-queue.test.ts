// Password derivations are bounded: at most `concurrency` at once, the rest in order, and a full
// queue fails at once (so a login flood gets 503s instead of stalling the event loop).
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import Fastify from 'fastify'
import tokenAuth from '../../lib/index.js'
import { KdfBusyError } from '../../lib/store/errors.js'
import { defaultKdfConcurrency, KdfQueue } from '../../lib/store/kdf-queue.js'
import { TokenService } from '../../lib/store/service.js'
import { freshDatabase } from '../helpers/db.js'

t.test('runs at most `concurrency` at once, in order, and refuses past maxWaiting', async (t) => {
  const queue = new KdfQueue({ concurrency: 2, maxWaiting: 3 })
  let running = 0
  let peak = 0
  const order: number[] = []
  const job = (i: number) => async () => {
    running++
    peak = Math.max(peak, running)
    await sleep(20)
    order.push(i)
    running--
    return i
  }
  const accepted = [0, 1, 2, 3, 4].map((i) => queue.run(job(i)))
  await t.rejects(queue.run(job(5)), KdfBusyError, 'the sixth (2 running + 3 waiting) fails at once')
  t.same(await Promise.all(accepted), [0, 1, 2, 3, 4])
  t.equal(peak, 2)
  t.same(order, [0, 1, 2, 3, 4], 'first come, first served')
  t.equal(await queue.run(job(6)), 6, 'usable again once drained')
  await t.rejects(queue.run(async () => { throw new Error('boom') }), /boom/)
  t.equal(await queue.run(job(7)), 7, 'a failing job gives its slot back')
})

t.test('defaults and option checks', async (t) => {
  t.ok(defaultKdfConcurrency() >= 1, 'the cores less one, at least 1')
  const db = { db: {} as never }
  t.throws(() => new TokenService(db, { passwordConcurrency: 0 }),
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'TokenService.passwordConcurrency', message: /option TokenService\.passwordConcurrency must be an integer from 1 to 1024, got 0/ })
  t.throws(() => new TokenService(db, { passwordQueue: -1 }), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'TokenService.passwordQueue' })
  t.throws(() => new TokenService(db, { passwordQueue: 1.5 }), { option: 'TokenService.passwordQueue', message: /passwordQueue/ })
})

t.test('a login beyond the queue gets 503 with Retry-After, never a 500', async (t) => {
  // A check of tens of ms (ln 14), so that the three arrive while the first one runs.
  const params = { ln: 14 }
  const { database } = await freshDatabase(t, { service: { passwordParams: params } })
  const app = Fastify()
  await app.register(tokenAuth, {
    database,
    service: { passwordParams: params, passwordConcurrency: 1, passwordReserved: 0, passwordQueue: 0 },
    routes: { throttle: false }
  })
  t.teardown(() => app.close())
  for (const name of ['kim', 'lee', 'max']) await app.tokenAuth.service!.createUser(name, 'correct horse battery')
  const login = (username: string, i: number) => app.inject({ method: 'POST', url: '/login', payload: { username, password: 'correct horse battery' }, remoteAddress: `10.0.0.${i}` })
  const answers = await Promise.all(['kim', 'lee', 'max'].map(login))
  const statuses = answers.map((r) => r.statusCode).sort()
  t.equal(statuses[0], 200, 'the first is served')
  t.ok(statuses.includes(503), `the others are refused at once: ${statuses.join(', ')}`)
  for (const r of answers.filter((r) => r.statusCode === 503)) {
    t.equal(r.headers['retry-after'], '5')
    t.equal(r.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
  }
})

t.test("the app's own work waits instead of being refused", async (t) => {
  const queue = new KdfQueue({ concurrency: 1, maxWaiting: 0 })
  const slow = () => new Promise<string>((resolve) => setTimeout(() => resolve('done'), 20))
  const first = queue.run(slow)
  await t.rejects(queue.run(slow), KdfBusyError, 'a login is refused')
  t.same(await Promise.all([first, queue.run(slow, { refusable: false }), queue.run(slow, { refusable: false })]), ['done', 'done', 'done'], 'user creation waits its turn')
})

t.test('per client: one running and perClientWaiting waiting, the next refused; clients take turns; reserved slots for the trusted', async (t) => {
  const queue = new KdfQueue({ concurrency: 1, reserved: 1, maxWaiting: 100, perClientWaiting: 2 })
  const order: string[] = []
  const job = (name: string, ms = 20) => async () => { order.push(`${name}+`); await sleep(ms); order.push(`${name}-`); return name }
  const a = [queue.run(job('a1'), { clients: ['ip:a'] }), queue.run(job('a2'), { clients: ['ip:a'] }), queue.run(job('a3'), { clients: ['ip:a'] })]
  await t.rejects(queue.run(job('a4'), { clients: ['ip:a'] }), { code: 'CLIENT_BUSY' }, 'a fourth of one client (1 running + 2 waiting) is refused at once')
  const b = queue.run(job('b1'), { clients: ['ip:b'] })
  const trusted = queue.run(job('c1'), { clients: ['ip:c'], trusted: true })
  t.same(await Promise.all([...a, b, trusted]), ['a1', 'a2', 'a3', 'b1', 'c1'])
  t.equal(order.indexOf('c1+'), 1, 'the trusted client starts at once, in the reserved slot')
  t.ok(order.indexOf('b1+') < order.indexOf('a3+'), 'b is not kept behind all of a\'s waiting jobs')
  t.ok(order.indexOf('a1-') < order.indexOf('a2+') && order.indexOf('a2-') < order.indexOf('a3+'), 'one of a\'s at a time')
  const shared = [queue.run(job('d1'), { clients: ['ip:d', 'account:x'] }), queue.run(job('e1'), { clients: ['ip:e', 'account:x'] })]
  await Promise.all(shared)
  t.ok(order.indexOf('d1-') < order.indexOf('e1+'), 'two addresses on one account: one at a time')
})
