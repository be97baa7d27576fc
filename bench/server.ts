/**
 * One bench scenario's server, run as a child process of bench/run.ts (pinned to its own core):
 *
 *   node --import tsx bench/server.ts <scenario>      (BENCH_CONFIG: JSON, see ServerConfig;
 *                                                       BENCH_PORT: a fixed port, when run by hand)
 *
 * Every scenario serves the same `GET /r` answering `{"hello":"world"}`; only what guards it differs.
 * Talks to the parent over IPC: sends { type: 'ready', port }, answers { type: 'start' } (reset the
 * CPU and event-loop-delay meters) and { type: 'stop' } (report them). Those messages are the only
 * side channel: they are not HTTP requests, so they are never counted by the loader.
 */
import { createHash } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify, { type FastifyInstance } from 'fastify'
import { eq } from 'drizzle-orm'
import { pathToFileURL } from 'node:url'

import { SCENARIOS, type Scenario, type ServerConfig } from './scenarios.js'

const body = { hello: 'world' }
// The plugin under test: this checkout's lib/, or another one's (BENCH_LIB, run.ts --compare).
const LIB = process.env.BENCH_LIB === undefined ? new URL('../lib/', import.meta.url) : pathToFileURL(process.env.BENCH_LIB.replace(/\/?$/, '/'))
const lib = async <T>(file: string): Promise<T> => await import(new URL(file, LIB).href) as T

async function build (scenario: Scenario, config: ServerConfig): Promise<{ app: FastifyInstance, close: () => Promise<void> }> {
  const app = Fastify({ logger: false })
  let close = async (): Promise<void> => {}

  switch (scenario) {
    case 'bare': case 'bare2':
      // Two identical servers: how far apart they come out is the bench's noise in that run.
      app.get('/r', async () => body)
      break

    case 'noop': case 'hash-only': {
      // noop, the limit for any provider: the plugin's whole path (header, resolver, guard) with a
      // provider that answers at once, without looking at the token. hash-only, the floor of any
      // provider that keeps no token in the clear: the same, plus the token's SHA-256 as this
      // plugin's providers make it (lib/sha256.ts), and nothing else.
      const { default: tokenAuth } = await lib<typeof import('../lib/index.js')>('index.js')
      const user = Object.freeze({ id: 1, username: 'bench', scopes: Object.freeze([]) })
      let getUser = (_token: string): typeof user | null => user
      if (scenario === 'hash-only') {
        // Imported here only: a --compare checkout from before lib/sha256.ts still runs the no-op.
        const { sha256Ascii } = await lib<typeof import('../lib/sha256.js')>('sha256.js')
        const digest = new Int32Array(8)
        getUser = (token) => sha256Ascii(token, digest) ? user : null
      }
      await app.register(tokenAuth, { provider: { getUser } })
      app.get('/r', { preHandler: app.auth }, async () => body)
      break
    }

    case 'bearer-auth': {
      const { default: bearerAuth } = await import('@fastify/bearer-auth')
      await app.register(bearerAuth, { keys: new Set([config.staticKey ?? 'static-key']) })
      app.get('/r', async () => body)
      break
    }

    case 'secret': {
      const { default: tokenAuth, SecretTokenAuthProvider } = await lib<typeof import('../lib/index.js')>('index.js')
      await app.register(tokenAuth, { provider: new SecretTokenAuthProvider({ tokens: config.secrets ?? [] }) })
      app.get('/r', { preHandler: app.auth }, async () => body)
      break
    }

    case 'naive': {
      // The baseline the issue names: SHA-256 of the token, then a Drizzle query builder select with
      // the join, built on every request (no .prepare()).
      const { createDatabase } = await import('../lib/store/database.js')
      const { tokens, users } = await import('../lib/store/schema.js')
      const database = await createDatabase(config.url, { max: config.poolSize ?? 10, idleTimeout: config.idleTimeout ?? 0 })
      close = () => database.close()
      const db = database.db
      app.addHook('onRequest', async (request, reply) => {
        const header = request.headers.authorization
        if (header === undefined || !header.startsWith('Bearer ')) return reply.code(401).send({ error: 'unauthorized' })
        const hash = createHash('sha256').update(header.slice(7)).digest('hex')
        const rows = await db.select({
          tokenId: tokens.id,
          userId: tokens.userId,
          scopes: tokens.scopes,
          expiresAt: tokens.expiresAt,
          username: users.username,
          active: users.active
        }).from(tokens).innerJoin(users, eq(users.id, tokens.userId)).where(eq(tokens.tokenHash, hash)).limit(1)
        const row = rows[0]
        if (row === undefined || !row.active || (row.expiresAt !== null && row.expiresAt.getTime() <= Date.now())) {
          return reply.code(401).send({ error: 'unauthorized' })
        }
        ;(request as unknown as { user: unknown }).user = { id: row.userId, username: row.username, tokenId: row.tokenId, scopes: row.scopes }
      })
      app.get('/r', async () => body)
      break
    }

    default: {
      // This plugin on the database provider. Warm: default cache. Cold: `drizzle: { cache: false }`.
      // The rejection scenarios use the default cache (reject-unknown-cold turns it off, so every
      // unknown token reaches the database; reject-unknown-neg keeps the negative cache on).
      const { default: tokenAuth } = await lib<typeof import('../lib/index.js')>('index.js')
      const { createDatabase } = await lib<typeof import('../lib/store/database.js')>('store/database.js')
      const database = await createDatabase(config.url, { max: config.poolSize ?? 10, idleTimeout: config.idleTimeout ?? 0, ...(config.replicas === undefined ? {} : { replicas: config.replicas }) })
      const cold = scenario === 'db-cold' || scenario === 'reject-unknown-cold'
      await app.register(tokenAuth, {
        database,
        drizzle: cold ? { cache: false } : {},
        routes: scenario === 'login' ? {} : false,
        // The rejections measure the check that refuses a token, not the per-address limit on
        // unknown tokens (which would answer 429 after its first 100 from the loader's address).
        ...(scenario.startsWith('reject-') ? { invalidTokens: false as const } : {})
      })
      app.addHook('onClose', async () => { await database.close() })
      app.get('/r', { preHandler: app.auth }, async () => body)
    }
  }
  return { app, close }
}

async function main (): Promise<void> {
  const scenario = process.argv[2] as Scenario
  if (!SCENARIOS.includes(scenario)) throw new Error(`unknown scenario ${scenario}; one of ${SCENARIOS.join(', ')}`)
  const config: ServerConfig = JSON.parse(process.env.BENCH_CONFIG ?? '{}')
  const { app, close } = await build(scenario, config)
  await app.listen({ host: '127.0.0.1', port: Number(process.env.BENCH_PORT ?? 0) })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  const eld = monitorEventLoopDelay({ resolution: 5 })
  let cpu = process.cpuUsage()
  let t0 = process.hrtime.bigint()
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'start') {
      eld.reset()
      eld.enable()
      cpu = process.cpuUsage()
      t0 = process.hrtime.bigint()
      process.send?.({ type: 'started' })
    } else if (msg.type === 'stop') {
      const used = process.cpuUsage(cpu)
      const t1 = process.hrtime.bigint()
      eld.disable()
      process.send?.({
        type: 'stopped',
        cpuUs: used.user + used.system,
        wallMs: Number(t1 - t0) / 1e6,
        // Monotonic µs, the clock of V8's CPU profile samples (bench/profile.ts keeps the window's).
        t0Us: Number(t0 / 1000n),
        t1Us: Number(t1 / 1000n),
        eld: { p50: eld.percentile(50) / 1e6, p99: eld.percentile(99) / 1e6, max: eld.max / 1e6, mean: eld.mean / 1e6 },
        rssMb: process.memoryUsage().rss / 1048576
      })
    } else if (msg.type === 'close') {
      app.close().then(close).finally(() => process.exit(0))
    }
  })
  if (process.send === undefined) console.log(`${scenario}: listening on http://127.0.0.1:${port}/r`) // run by hand
  else process.send({ type: 'ready', port, pid: process.pid })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
