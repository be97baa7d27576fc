/**
 * npm run soak -- [--duration 60] [--warmup 15] [--concurrency 32] [--pool 10] [--database-url URL]
 *
 * About a minute of mixed traffic against the example server (bench/soak-server.ts, a child process,
 * on a fresh PostgreSQL database made for the run and dropped after it): logins, authenticated
 * requests, logouts, and bad tokens (malformed, bad checksum, well-formed but unknown, revoked).
 * Reports the answers by status (the run fails on any 5xx), the server's memory after warm-up
 * against the end (RSS and heap, each after a full GC when the server runs with --expose-gc; target
 * growth < 10%), and the peak number of the server's database connections (pg_stat_activity, polled
 * every 100 ms; bounded by the pool plus the LISTEN connection). Writes bench/results/soak-<time>.json.
 *
 * DATABASE_URL (or --database-url) names the PostgreSQL server; default postgres://postgres@127.0.0.1:5432/test.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import { Agent, request } from 'node:http'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { createDatabase } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'
import { generateToken } from '../lib/store/token-format.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '15' },
    concurrency: { type: 'string', default: '32' },
    pool: { type: 'string', default: '10' },
    users: { type: 'string', default: '20' },
    'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' }
  }
})
const seconds = (name: string, v: string): number => {
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`)
  return n
}
const duration = seconds('duration', values.duration) * 1000
const warmup = Math.min(seconds('warmup', values.warmup) * 1000, duration / 2)
const concurrency = Math.floor(seconds('concurrency', values.concurrency))
const pool = Math.floor(seconds('pool', values.pool))
const userCount = Math.floor(seconds('users', values.users))
const baseUrl = values['database-url']

// ---- a database for this run ------------------------------------------------------------------
const admin = postgres(baseUrl, { max: 1, onnotice: () => {} })
const dbName = `tat_soak_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
await admin.unsafe(`create database "${dbName}"`)
const dbUrl = new URL(baseUrl)
dbUrl.pathname = `/${dbName}`
let cleanedUp = false
async function cleanup (): Promise<void> {
  if (cleanedUp) return
  cleanedUp = true
  await admin.unsafe(`drop database if exists "${dbName}" with (force)`).catch(() => {})
  await admin.end({ timeout: 5 })
}

try {
  await main()
} finally {
  await cleanup()
}

async function main (): Promise<void> {
  // Users are made through the service with the server's (default, OWASP) scrypt parameters.
  const setup = await createDatabase(dbUrl.toString(), { max: 4 })
  await migrate(setup)
  const service = new TokenService(setup)
  const users = Array.from({ length: userCount }, (_, i) => ({ username: `soak${i}`, password: randomBytes(12).toString('base64url') }))
  await Promise.all(users.map(async (u) => await service.createUser(u.username, u.password)))
  await setup.close()

  const server = fork(new URL('./soak-server.ts', import.meta.url), [], {
    execArgv: ['--expose-gc', '--import', 'tsx'],
    env: { ...process.env, SOAK_DATABASE_URL: dbUrl.toString(), SOAK_POOL: String(pool) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.once('message', (m: { type: string, port: number }) => { if (m.type === 'ready') resolve(m.port) })
    server.once('exit', (code) => reject(new Error(`the server exited (${code}) before it was ready`)))
  })
  const memory = async (): Promise<{ rss: number, heapUsed: number, gc: boolean }> => await new Promise((resolve) => {
    const onMessage = (m: { type: string, rss: number, heapUsed: number, gc: boolean }): void => {
      if (m.type !== 'memory') return
      server.off('message', onMessage)
      resolve(m)
    }
    server.on('message', onMessage)
    server.send({ type: 'memory' })
  })

  // ---- traffic ----------------------------------------------------------------------------------
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const statuses = new Map<string, Map<number, number>>()
  const count = (kind: string, status: number): void => {
    const m = statuses.get(kind) ?? new Map<number, number>()
    m.set(status, (m.get(status) ?? 0) + 1)
    statuses.set(kind, m)
  }
  const unexpected: string[] = []
  const send = async (method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number, body: string }> =>
    await new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
      })
      req.on('error', () => resolve({ status: 0, body: '' }))
      req.end(body)
    })

  const live: string[] = [] // tokens issued and not logged out
  const revoked: string[] = []
  let loginsInFlight = 0

  async function step (): Promise<void> {
    const r = Math.random()
    if ((r < 0.04 || live.length < 5) && loginsInFlight < 2) {
      // Login (scrypt N=2^17 costs ~128 MiB and a core for ~0.2 s: at most two at a time).
      loginsInFlight++
      const u = users[Math.floor(Math.random() * users.length)]
      const res = await send('POST', '/login', { 'content-type': 'application/json' }, JSON.stringify(u))
      loginsInFlight--
      count('login', res.status)
      if (res.status === 200) live.push(JSON.parse(res.body).token)
      else unexpected.push(`login ${res.status}`)
    } else if (r < 0.07 && live.length > 5) {
      const token = live.splice(Math.floor(Math.random() * live.length), 1)[0]
      const res = await send('POST', '/logout', { authorization: `Bearer ${token}` })
      count('logout', res.status)
      if (res.status === 204) revoked.push(token)
      else unexpected.push(`logout ${res.status}`)
      if (revoked.length > 1000) revoked.splice(0, 500)
    } else if (r < 0.82 && live.length > 0) {
      const token = live[Math.floor(Math.random() * live.length)]
      const res = await send('GET', '/me', { authorization: `Bearer ${token}` })
      count('me (valid)', res.status)
      // A token logged out concurrently by another worker may get its 401 here: not unexpected.
      if (res.status !== 200 && !(res.status === 401 && !live.includes(token))) unexpected.push(`me ${res.status}`)
    } else {
      const kinds = ['malformed', 'bad checksum', 'unknown', 'revoked', 'missing'] as const
      const kind = kinds[Math.floor(Math.random() * kinds.length)]
      const good = live[0] ?? generateToken()
      const token = kind === 'malformed'
        ? 'not a token!'
        : kind === 'bad checksum'
          ? good.slice(0, -1) + (good.endsWith('a') ? 'b' : 'a')
          : kind === 'unknown' ? generateToken() : revoked[Math.floor(Math.random() * revoked.length)] ?? generateToken()
      const res = await send('GET', '/me', kind === 'missing' ? {} : { authorization: `Bearer ${token}` })
      count(`me (${kind})`, res.status)
      const expected = kind === 'malformed' ? 400 : 401
      if (res.status !== expected) unexpected.push(`me (${kind}) ${res.status}`)
    }
  }

  // ---- meters -----------------------------------------------------------------------------------
  let peakConnections = 0
  const connections = setInterval(() => {
    admin`select count(*)::int as n from pg_stat_activity where datname = ${dbName}`
      .then(([row]) => { peakConnections = Math.max(peakConnections, row.n) }, () => {})
  }, 100)

  const started = Date.now()
  let warm: { rss: number, heapUsed: number, gc: boolean } | undefined
  const samples: Array<{ t: number, rss: number, heapUsed: number }> = []
  const sampler = setInterval(() => {
    memory().then((m) => {
      samples.push({ t: Math.round((Date.now() - started) / 1000), rss: m.rss, heapUsed: m.heapUsed })
    }, () => {})
  }, 5000)
  const warmed = new Promise<void>((resolve) => setTimeout(() => {
    memory().then((m) => { warm = m; resolve() }, () => resolve())
  }, warmup))

  let requests = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() - started < duration) {
      await step()
      requests++
    }
  }))
  await warmed
  clearInterval(sampler)
  clearInterval(connections)
  const end = await memory()
  agent.destroy()
  server.disconnect()
  await new Promise((resolve) => server.once('exit', resolve))

  // ---- report -----------------------------------------------------------------------------------
  const fivexx = [...statuses.values()].reduce((n, m) => n + [...m].filter(([s]) => s >= 500 || s === 0).reduce((a, [, c]) => a + c, 0), 0)
  const mib = (b: number): string => (b / 1048576).toFixed(1)
  const growth = (a: number, b: number): string => `${((b - a) / a * 100).toFixed(1)}%`
  const elapsed = (Date.now() - started) / 1000
  const lines = [
    `soak: ${elapsed.toFixed(0)} s, ${concurrency} concurrent clients, ${userCount} users, pool ${pool}; ${requests} requests (${Math.round(requests / elapsed)}/s)`,
    '',
    'answers by kind and status:',
    ...[...statuses].sort().map(([kind, m]) => `  ${kind.padEnd(20)} ${[...m].sort().map(([s, c]) => `${s}: ${c}`).join(', ')}`),
    '',
    `5xx (or no answer): ${fivexx}`,
    `unexpected answers: ${unexpected.length}${unexpected.length > 0 ? ` (${[...new Set(unexpected)].slice(0, 5).join('; ')})` : ''}`,
    warm === undefined
      ? 'memory: no warm-up sample'
      : `memory after ${(warmup / 1000).toFixed(0)} s warm-up → end${end.gc ? ' (after a full GC)' : ''}: RSS ${mib(warm.rss)} → ${mib(end.rss)} MiB (${growth(warm.rss, end.rss)}), heap ${mib(warm.heapUsed)} → ${mib(end.heapUsed)} MiB (${growth(warm.heapUsed, end.heapUsed)})`,
    `memory samples (s: RSS/heap MiB): ${samples.map((s) => `${s.t}: ${mib(s.rss)}/${mib(s.heapUsed)}`).join(', ')}`,
    `peak database connections of the server: ${peakConnections} (pool ${pool} + 1 LISTEN)`
  ]
  process.stdout.write(lines.join('\n') + '\n')
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
  const file = new URL(`./results/soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url)
  fs.writeFileSync(file, JSON.stringify({
    duration: elapsed,
    concurrency,
    pool,
    users: userCount,
    requests,
    statuses: Object.fromEntries([...statuses].map(([k, m]) => [k, Object.fromEntries(m)])),
    fivexx,
    unexpected: unexpected.length,
    warm,
    end,
    samples,
    peakConnections
  }, null, 2))
  process.stdout.write(`written: ${file.pathname}\n`)
  if (fivexx > 0 || peakConnections > pool + 1) process.exitCode = 1
}
