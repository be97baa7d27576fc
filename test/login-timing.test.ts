// No user enumeration by timing (issue 5 item 3): with the real default scrypt parameters
// (N = 2^17, r = 8, p = 1), the median latency of a login for an unknown user and for a known user
// with a wrong password are within 10% of each other. The two are measured alternately, so that load
// from anything else on the machine hits both groups alike. Also prints the login medians.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth from '../lib/index.js'
import { DEFAULT_PASSWORD_PARAMS } from '../lib/store/passwords.js'
import { freshDatabase } from './helpers/db.js'

const ROUNDS = 20
const PASSWORD = 'correct horse battery staple'

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

async function timed (app: FastifyInstance, username: string, password: string, expected: number): Promise<number> {
  const start = process.hrtime.bigint()
  const res = await app.inject({ method: 'POST', url: '/login', payload: { username, password } })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (res.statusCode !== expected) throw new Error(`login of ${username}: ${res.statusCode} ${res.body}`)
  return ms
}

t.test('unknown user vs wrong password: medians within 10% (default scrypt parameters)', async (t) => {
  const { database } = await freshDatabase(t, { service: {} })
  const app = Fastify()
  // No `passwordParams`: the defaults. No throttle: 30 failures for one account would trip it.
  await app.register(tokenAuth, { database, routes: { throttle: false } })
  t.teardown(() => app.close())
  await app.ready()
  const service = app.tokenAuth.service!
  t.same(service.passwordParams, DEFAULT_PASSWORD_PARAMS, 'the real parameters')
  await service.createUser('alice', PASSWORD)
  await service.createUser('bob', PASSWORD)
  await service.deactivateUser('bob')

  // Warm up (JIT, connection pool, prepared statements).
  await timed(app, 'nobody', 'wrong', 401)
  await timed(app, 'alice', 'wrong', 401)

  const unknown: number[] = []
  const wrong: number[] = []
  const inactive: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    // One after the other (the service runs one derivation at a time on a 2-core machine, so a pair
    // side by side would time the queue, not the work), in alternating order: u w, w u, u w, ...
    if (i % 2 === 0) {
      unknown.push(await timed(app, `nobody${i}`, 'wrong', 401))
      wrong.push(await timed(app, 'alice', `wrong${i}`, 401))
    } else {
      wrong.push(await timed(app, 'alice', `wrong${i}`, 401))
      unknown.push(await timed(app, `nobody${i}`, 'wrong', 401))
    }
    if (i % 3 === 0) inactive.push(await timed(app, 'bob', PASSWORD, 401))
  }
  const success: number[] = []
  for (let i = 0; i < 5; i++) success.push(await timed(app, 'alice', PASSWORD, 200))

  const mu = median(unknown)
  const mw = median(wrong)
  const diff = Math.abs(mu - mw) / Math.max(mu, mw)
  t.comment(`login median, ${ROUNDS} each, scrypt ln=17 r=8 p=1: unknown user ${mu.toFixed(1)} ms, ` +
    `wrong password ${mw.toFixed(1)} ms, inactive user ${median(inactive).toFixed(1)} ms (${inactive.length}), ` +
    `success ${median(success).toFixed(1)} ms (${success.length}); unknown vs wrong differ by ${(diff * 100).toFixed(1)}%`)
  t.ok(diff <= 0.10, `medians within 10% (${(diff * 100).toFixed(1)}%)`)
  // The answers are the same; the work behind them is the real KDF (not a shortcut for unknown users).
  t.ok(mu > 20 && mw > 20, 'both paths run the KDF (tens of milliseconds)')
})
