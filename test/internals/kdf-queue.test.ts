// Password derivations are bounded: at most `concurrency` at once, the rest in order, and a full
// queue fails at once (so a login flood gets 503s instead of stalling the event loop).
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import Fastify from 'fastify'
import tokenAuth from '../../lib/index.js'
import { KdfBusyError } from '../../lib/store/errors.js'
import { defaultKdfConcurrency, KdfQueue } from '../../lib/store/kdf-queue.js'
import { TokenService } from '../../lib/store/service.js'
import { FAST_PASSWORD_PARAMS, freshDatabase } from '../helpers/db.js'

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
  const { database } = await freshDatabase(t)
  const app = Fastify()
  await app.register(tokenAuth, {
    database,
    service: { passwordParams: FAST_PASSWORD_PARAMS, passwordConcurrency: 1, passwordQueue: 0 },
    routes: { throttle: false }
  })
  t.teardown(() => app.close())
  await app.tokenAuth.service!.createUser('kim', 'correct horse battery')
  const login = () => app.inject({ method: 'POST', url: '/login', payload: { username: 'kim', password: 'correct horse battery' } })
  const answers = await Promise.all([login(), login(), login()])
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
  t.same(await Promise.all([first, queue.run(slow, false), queue.run(slow, false)]), ['done', 'done', 'done'], 'user creation waits its turn')
})
