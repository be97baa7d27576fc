/**
 * The soak's server: the example app (example/app.ts, what `npm start` serves) on PostgreSQL, run as a
 * child process of bench/soak.ts:
 *
 *   node --expose-gc --import tsx bench/soak-server.ts      (SOAK_DATABASE_URL, SOAK_POOL)
 *
 * Talks to the parent over IPC only (never HTTP, so nothing extra is served or counted): sends
 * { type: 'ready', port }; answers { type: 'memory' } with { type: 'memory', rss, heapUsed }, after a
 * full collection when --expose-gc is on.
 */
import { buildServer } from '../example/app.js'
import { createDatabase } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'

const url = process.env.SOAK_DATABASE_URL
if (url === undefined || url === '') throw new Error('SOAK_DATABASE_URL is required')
const database = await createDatabase(url, { max: Number(process.env.SOAK_POOL ?? 10) })
await migrate(database)
const app = await buildServer({ database, logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
await app.listen({ port: 0, host: '127.0.0.1' })
const gc = (globalThis as { gc?: () => void }).gc

process.on('message', (message: { type: string }) => {
  if (message.type === 'memory' && process.connected) {
    gc?.()
    const { rss, heapUsed } = process.memoryUsage()
    process.send?.({ type: 'memory', rss, heapUsed, gc: gc !== undefined }, undefined, {}, () => {}) // the parent may be gone
  }
})
process.on('disconnect', () => {
  app.close().then(async () => await database.close()).finally(() => process.exit(0))
})
process.send?.({ type: 'ready', port: (app.server.address() as { port: number }).port })
