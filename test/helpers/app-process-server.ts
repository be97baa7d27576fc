/**
 * One app process of test/multi-process.test.ts: a small Fastify app with the plugin on the
 * PostgreSQL database of DATABASE_URL (already migrated by the test), the default cache (60 s TTL: a
 * revocation made elsewhere reaches it by NOTIFY only), the default routes and the default throttle
 * (its counters in the database). Environment:
 *   DATABASE_URL   the database
 *   POOL_MAX       createDatabase's `max` (default 4)
 *   PGAPPNAME      read by postgres.js: names this process's connections in pg_stat_activity
 * Prints one line `{"port":N}` once listening; SIGTERM closes the app, then the database.
 */
import Fastify from 'fastify'
import tokenAuth, { createDatabase } from '../../lib/index.js'
import { FAST_PASSWORD_PARAMS } from './db.js'

const url = process.env.DATABASE_URL
if (url === undefined || url === '') throw new Error('DATABASE_URL is required')
const database = await createDatabase(url, { max: Number(process.env.POOL_MAX ?? 4) })
const app = Fastify({ logger: false })
await app.register(tokenAuth, {
  database,
  service: { passwordParams: FAST_PASSWORD_PARAMS },
  // The test polls revoked tokens from one address on purpose, more than 100 a minute.
  invalidTokens: { max: 1_000_000 },
  // The throttle's counters are shared by the processes, its delays (kept per process) are not: the
  // test spreads 10 failures from one address over four processes to check the counts alone.
  routes: { throttle: { delay: false } }
})
app.get('/me', { preHandler: app.auth }, async (request) => request.user)
// What this process's cache did: lets the test check a token was cached before it was revoked.
app.get('/metrics', async () => app.tokenAuth.metrics())

process.on('SIGTERM', () => {
  app.close().finally(() => database.close()).then(() => process.exit(0), () => process.exit(1))
})
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 }) + '\n')
