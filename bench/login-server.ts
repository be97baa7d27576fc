/**
 * The server of bench/login-flood.ts, run as its child (pinned to core 0 with taskset): the plugin on
 * the database provider with its routes (/login, /logout, ...) at the app's defaults (scrypt N = 2^17,
 * the login throttle in the database, the password queue sized for the cores it may use), plus a
 * protected `GET /r` for background load.
 *
 *   BENCH_URL=postgres://... BENCH_THROTTLE=default|loose node --import tsx bench/login-server.ts
 *
 * `loose` raises the throttle's limits out of reach (and has no delays) (the timing mode's samples are hundreds of failed
 * logins for a few accounts): the attempts still take the throttle's path (a read and a count each).
 * Sends { type: 'ready', port } over IPC; exits on { type: 'close' }.
 */
import Fastify from 'fastify'
import tokenAuth from '../lib/index.js'
import { createDatabase } from '../lib/store/database.js'

async function main (): Promise<void> {
  const url = process.env.BENCH_URL
  if (url === undefined) throw new Error('BENCH_URL is not set')
  const loose = process.env.BENCH_THROTTLE === 'loose'
  const database = await createDatabase(url)
  const app = Fastify({ logger: false })
  await app.register(tokenAuth, {
    database,
    routes: loose ? { throttle: { perAccountAndIp: 1_000_000, perAccount: 1_000_000, perIp: 1_000_000, delay: false } } : {}
  })
  app.addHook('onClose', async () => { await database.close() })
  app.get('/r', { preHandler: app.auth }, async () => ({ hello: 'world' }))
  // 0.0.0.0 would do too; 127.0.0.1 is reached from any loopback source address (127.0.0.0/8).
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'close') app.close().finally(() => process.exit(0))
  })
  process.send?.({ type: 'ready', port, pid: process.pid })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
