/**
 * The figures of docs/capacity.md, measured on this machine in one run:
 *
 * - cache memory: the heap that 100,000 good tokens (a user object like the provider's) and 100,000
 *   unknown ones take in the provider's TokenCache (after a full GC, before and after);
 * - the database behind a cold lookup: `--tokens` filler rows (default 1,000,000; 10,000,000 for
 *   the scale note), table and index sizes, EXPLAIN (ANALYZE, BUFFERS) of the provider's own query
 *   for one token and for 100 at once (`= ANY`), and their timings through the provider (cache off);
 * - processes: 1, 2 and 4 servers (bench/server.ts, cache off and warm) on the one database, loaded
 *   together (connections split between them), req/s in all;
 * - revocation across processes: 4 servers (cache warm, LISTEN on) hold a token; it is revoked
 *   through the TokenService here, and each server is polled until it answers 401 (50 tokens);
 * - a streaming replica (started here with the machine's PostgreSQL binaries, test/helpers/pg-cluster.ts):
 *   cold lookups with and without `replicas`, and where the transactions went.
 *
 * Nothing is pinned: on 2 cores the servers, the loader (this process) and PostgreSQL share them,
 * which is the point (what more processes buy on one machine). Results: stdout, and
 * bench/results/capacity-<date>.md and .json.
 *
 *   npm run bench:capacity -- [--tokens 10000000] [--duration 5] [--processes 1,2,4] [--no-replica]
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { drizzle } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { TokenCache } from '../lib/providers/token-cache.js'
import { hexToKey } from '../lib/sha256.js'
import { createDatabase, type TokenAuthDatabase } from '../lib/store/database.js'
import * as schema from '../lib/store/schema.js'
import { TokenService } from '../lib/store/service.js'
import { startCluster } from '../test/helpers/pg-cluster.js'
import { runLoad, type LoadSummary } from './load.js'
import { startServer, type Server } from './procs.js'
import { median, quantile } from './report.js'
import { seedBenchDatabase, type BenchDatabase } from './seed.js'

const { values: args } = parseArgs({
  options: {
    tokens: { type: 'string', default: '1000000' },
    duration: { type: 'string', default: '5' },
    processes: { type: 'string', default: '1,2,4' },
    'no-replica': { type: 'boolean', default: false },
    only: { type: 'string', default: 'memory,lookups,processes,revocation,replica' },
    'database-url': { type: 'string' },
    help: { type: 'boolean', default: false }
  }
})
if (args.help) {
  console.log('usage: npm run bench:capacity -- [--tokens 1000000] [--duration 5] [--processes 1,2,4] [--no-replica] [--only memory,lookups,processes,revocation,replica] [--database-url URL]')
  process.exit(0)
}
const filler = Number(args.tokens)
const duration = Number(args.duration)
const processCounts = args.processes.split(',').map(Number)
const only = new Set(args.only.split(','))
if (args['no-replica']) only.delete('replica')
const adminUrl = args['database-url'] ?? process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const CONNECTIONS = 48
const out: string[] = []
const json: Record<string, unknown> = {}
const say = (line = ''): void => { console.log(line); out.push(line) }
const n = (v: number, digits = 0): string => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function heapAfterGc (): number {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:capacity does)')
  gc(); gc()
  return process.memoryUsage().heapUsed
}

/** Heap bytes per entry of the provider's cache: good tokens, then unknown ones. */
function cacheMemory (entries = 100_000): { good: number, unknown: number } {
  const cache = new TokenCache({ max: entries, ttl: 60_000, negativeTtl: 60_000, negativeMax: entries })
  const now = Date.now()
  const h0 = heapAfterGc()
  for (let i = 0; i < entries; i++) {
    // Keyed as the provider keys it: the digest as 16 characters (sha256.ts digestKey).
    const key = hexToKey(randomBytes(32).toString('hex'))
    const user = Object.freeze({ id: i, username: `user${i}`, tokenId: i, scopes: Object.freeze(['read']) })
    cache.set(key, { user: user as never, userKey: String(i), tokenId: i, expiresAt: null, createdAt: now, lastUsedAt: 0 }, now)
  }
  const h1 = heapAfterGc()
  for (let i = 0; i < entries; i++) cache.setUnknown(hexToKey(randomBytes(32).toString('hex')))
  const h2 = heapAfterGc()
  if (!cache.enabled) throw new Error('cache off')
  return { good: (h1 - h0) / entries, unknown: (h2 - h1) / entries }
}

interface Plan { node: string, index?: string, sharedHit: number, sharedRead: number, executionMs: number, rows: number }

async function explain (sql: postgres.Sql, query: string, params: unknown[]): Promise<Plan> {
  const [row] = await sql.unsafe(`explain (analyze, buffers, format json) ${query}`, params as never[])
  const top = (row['QUERY PLAN'] as Array<{ Plan: Record<string, unknown>, 'Execution Time': number }>)[0]
  const nodes: Array<Record<string, unknown>> = []
  const walk = (p: Record<string, unknown>): void => { nodes.push(p); for (const c of (p.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(c) }
  walk(top.Plan)
  const onTokens = nodes.find((p) => p['Relation Name'] === 'token_auth_tokens') ?? {}
  // A bitmap heap scan names its index in its Bitmap Index Scan child.
  const index = nodes.find((p) => String(p['Index Name'] ?? '').startsWith('token_auth_tokens'))?.['Index Name']
  return {
    node: String(onTokens['Node Type']),
    index: index as string | undefined,
    sharedHit: top.Plan['Shared Hit Blocks'] as number,
    sharedRead: top.Plan['Shared Read Blocks'] as number,
    executionMs: top['Execution Time'],
    rows: top.Plan['Actual Rows'] as number
  }
}

async function lookups (db: BenchDatabase): Promise<void> {
  const database = await createDatabase(db.url, { max: 10 })
  const sql = database.sql as postgres.Sql
  try {
    const [size] = await sql.unsafe(`select pg_total_relation_size('token_auth_tokens')::bigint as total,
      pg_relation_size('token_auth_tokens')::bigint as heap,
      pg_relation_size('token_auth_tokens_token_hash_unique')::bigint as index`)
    const mb = (v: unknown): string => n(Number(v) / 1048576)
    say(`${n(db.rows)} token rows (seeded in ${n(db.seedMs / 1000, 1)} s): table ${mb(size.heap)} MiB, token_hash index ${mb(size.index)} MiB, ${mb(size.total)} MiB with every index and TOAST`)
    json.table = { rows: db.rows, seedMs: db.seedMs, heapBytes: Number(size.heap), indexBytes: Number(size.index), totalBytes: Number(size.total) }

    // The provider's own queries, captured on their way out.
    const captured: Array<{ query: string, params: unknown[] }> = []
    const logged = drizzle(sql, { schema, logger: { logQuery: (query, params) => { captured.push({ query, params }) } } }) as unknown as TokenAuthDatabase
    const service = new TokenService({ db: logged })
    const provider = new DrizzleTokenAuthProvider({ db: logged, service, cache: false, lastUsedInterval: false })
    const pool = db.tokens
    const pick = (): string => pool[Math.floor(Math.random() * pool.length)]

    for (let i = 0; i < 200; i++) await provider.getUser(pick()) // warm: statements prepared, pages cached
    const single: number[] = []
    for (let i = 0; i < 2000; i++) {
      const t0 = performance.now()
      const user = await provider.getUser(pick())
      single.push(performance.now() - t0)
      if (user === null) throw new Error('a real token did not resolve')
    }
    const batch: number[] = []
    for (let i = 0; i < 200; i++) {
      const asked = Array.from({ length: 100 }, pick)
      const t0 = performance.now()
      await Promise.all(asked.map(async (t) => await provider.getUser(t)))
      batch.push(performance.now() - t0)
    }
    await provider.close()
    const one = captured.find((q) => / = \$1/.test(q.query))!
    const many = captured.filter((q) => / = any\(/.test(q.query)).at(-1)!
    const planOne = await explain(sql, one.query, one.params)
    const planMany = await explain(sql, many.query, many.params)
    const hashes = String(many.params[0]).split(',').length
    say()
    say('| lookup (cache off, through the provider) | median | p99 | per token | plan on token_auth_tokens | buffers (shared hit + read) | execution |')
    say('|---|---:|---:|---:|---|---:|---:|')
    say(`| one token (\`= $1\`), 2,000 in a row | ${n(median(single) * 1000)} µs | ${n(quantile(single, 0.99) * 1000)} µs | ${n(median(single) * 1000)} µs | ${planOne.node} on ${planOne.index ?? '–'} | ${planOne.sharedHit} + ${planOne.sharedRead} | ${n(planOne.executionMs, 3)} ms |`)
    say(`| 100 tokens at once (\`= ANY($1)\`, ${hashes} in the query explained), 200 times | ${n(median(batch) * 1000)} µs | ${n(quantile(batch, 0.99) * 1000)} µs | ${n(median(batch) * 10)} µs | ${planMany.node} on ${planMany.index ?? '–'} | ${planMany.sharedHit} + ${planMany.sharedRead} | ${n(planMany.executionMs, 3)} ms |`)
    json.lookups = { singleMedianMs: median(single), singleP99Ms: quantile(single, 0.99), batchMedianMs: median(batch), batchP99Ms: quantile(batch, 0.99), planOne, planMany, hashesInExplainedBatch: hashes }
  } finally {
    await database.close()
  }
}

/** `count` servers of `scenario` on `url`, loaded together for `duration` s (after 2 s); req/s in all. */
async function processes (scenario: 'db-cold' | 'db-warm', count: number, db: BenchDatabase, url: string, replicas?: string[]): Promise<{ rps: number, p99: number, statuses: Record<string, number>, loaderCpuPct: number }> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) servers.push(await startServer(scenario, { url, poolSize: 10, ...(replicas === undefined ? {} : { replicas }) }, { pin: false }))
    const load = async (seconds: number): Promise<LoadSummary[]> => await Promise.all(servers.map(async (s) =>
      await runLoad({ url: `${s.url}/r`, tokens: db.tokens, connections: Math.max(4, Math.floor(CONNECTIONS / count)), duration: seconds })))
    await load(2)
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    const results = await load(duration)
    const used = process.cpuUsage(cpu)
    const statuses: Record<string, number> = {}
    for (const r of results) for (const [code, c] of Object.entries(r.statusCounts)) statuses[code] = (statuses[code] ?? 0) + c
    return {
      rps: results.reduce((a, r) => a + r.rps, 0),
      p99: Math.max(...results.map((r) => r.p99)),
      statuses,
      loaderCpuPct: 100 * (used.user + used.system) / ((performance.now() - t0) * 1000)
    }
  } finally {
    await Promise.all(servers.map(async (s) => await s.close()))
  }
}

async function scaling (db: BenchDatabase): Promise<void> {
  say()
  say('| servers on one database | cache | req/s in all | × 1 server | worst p99 | statuses | loader CPU |')
  say('|---:|---|---:|---:|---:|---|---:|')
  const rows: unknown[] = []
  for (const scenario of ['db-cold', 'db-warm'] as const) {
    let base = 0
    for (const count of processCounts) {
      const r = await processes(scenario, count, db, db.url)
      if (count === processCounts[0]) base = r.rps
      rows.push({ scenario, count, ...r })
      say(`| ${count} | ${scenario === 'db-cold' ? 'off (every request a lookup)' : 'warm'} | ${n(r.rps)} | ${n(r.rps / base, 2)} | ${r.p99} ms | ${JSON.stringify(r.statuses)} | ${n(r.loaderCpuPct)}% |`)
    }
  }
  json.processes = rows
}

/** How long after revokeToken returns each of 4 processes (cache warm, LISTEN on) refuses the token. */
async function revocation (db: BenchDatabase): Promise<void> {
  const count = 4
  const servers: Server[] = []
  const database = await createDatabase(db.url, { max: 2 })
  const service = new TokenService(database)
  try {
    for (let i = 0; i < count; i++) servers.push(await startServer('db-warm', { url: db.url, poolSize: 2 }, { pin: false }))
    // A user of its own: the bench user already holds its most tokens.
    const user = await service.createUser(`revocation${Date.now()}`, 'capacity bench password')
    const status = async (server: Server, token: string): Promise<number> =>
      (await fetch(`${server.url}/r`, { headers: { authorization: `Bearer ${token}` } })).status
    const delays: number[] = []
    for (let round = 0; round < 50; round++) {
      const issued = await service.issueToken(user.id, { name: 'capacity' })
      for (const s of servers) if (await status(s, issued.token) !== 200) throw new Error('a fresh token was refused')
      await service.revokeToken(issued.id)
      const t0 = performance.now()
      await Promise.all(servers.map(async (s) => {
        while (await status(s, issued.token) !== 401) {
          if (performance.now() - t0 > 10_000) throw new Error('a revoked token still works after 10 s')
        }
        delays.push(performance.now() - t0)
      }))
    }
    say()
    say(`Revocation across ${count} processes (each had the token cached; 50 tokens, ${delays.length} refusals): refused by each within p50 ${n(median(delays), 1)} ms, p99 ${n(quantile(delays, 0.99), 1)} ms, max ${n(Math.max(...delays), 1)} ms after revokeToken returned.`)
    json.revocation = { processes: count, samples: delays.length, p50Ms: median(delays), p99Ms: quantile(delays, 0.99), maxMs: Math.max(...delays) }
  } finally {
    await Promise.all(servers.map(async (s) => await s.close()))
    await database.close()
  }
}

async function replica (): Promise<void> {
  say()
  say('Starting a primary and a streaming replica of its own (initdb, pg_basebackup -R) ...')
  const cluster = await startCluster({ replica: true })
  try {
    const db = await seedBenchDatabase({ adminUrl: cluster.url, name: 'token_auth_capacity', tokens: 100_000 })
    while (await cluster.replicationLagBytes() > 0) await new Promise((resolve) => setTimeout(resolve, 100))
    const replicaUrl = new URL(db.url)
    replicaUrl.port = String(cluster.replicaPort)
    const commits = async (url: string): Promise<number> => {
      const sql = postgres(url, { max: 1, onnotice: () => {} })
      try {
        const [row] = await sql.unsafe('select xact_commit::bigint as c from pg_stat_database where datname = current_database()')
        return Number(row.c)
      } finally { await sql.end() }
    }
    say()
    say('| cold lookups (cache off), 100,000 rows | servers | req/s in all | transactions on the primary | on the replica | statuses |')
    say('|---|---:|---:|---:|---:|---|')
    const rows: unknown[] = []
    for (const withReplica of [false, true]) {
      for (const count of processCounts.filter((c) => c <= 2)) {
        const p0 = await commits(db.url)
        const r0 = await commits(replicaUrl.toString())
        const r = await processes('db-cold', count, db, db.url, withReplica ? [replicaUrl.toString()] : undefined)
        // pg_stat_database is updated when a backend reports (at most every 500 ms, and on exit).
        await new Promise((resolve) => setTimeout(resolve, 1500))
        const onPrimary = await commits(db.url) - p0
        const onReplica = await commits(replicaUrl.toString()) - r0
        rows.push({ withReplica, count, ...r, onPrimary, onReplica })
        say(`| ${withReplica ? 'lookups on the replica' : 'primary only'} | ${count} | ${n(r.rps)} | ${n(onPrimary)} | ${n(onReplica)} | ${JSON.stringify(r.statuses)} |`)
      }
    }
    json.replica = rows
    await db.drop()
  } finally {
    await cluster.stop()
  }
}

async function main (): Promise<void> {
  const started = new Date()
  say(`# capacity: ${started.toISOString()}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`)
  say()
  if (only.has('memory')) {
    const mem = cacheMemory()
    say(`Cache memory (heap after a full GC, 100,000 entries each): ${n(mem.good)} bytes per good token (its user object included), ${n(mem.unknown)} bytes per unknown token.`)
    json.cacheBytes = mem
    say()
  }
  if (only.has('lookups') || only.has('processes') || only.has('revocation')) {
    say(`Seeding ${n(filler)} filler token rows ...`)
    const db = await seedBenchDatabase({ adminUrl, name: 'token_auth_capacity', tokens: filler })
    try {
      if (only.has('lookups')) await lookups(db)
      if (only.has('processes')) await scaling(db)
      if (only.has('revocation')) await revocation(db)
    } finally {
      await db.drop()
    }
  }
  if (only.has('replica')) await replica()
  mkdirSync('bench/results', { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  writeFileSync(`bench/results/capacity-${stamp}.md`, out.join('\n') + '\n')
  writeFileSync(`bench/results/capacity-${stamp}.json`, JSON.stringify(json, null, 2) + '\n')
  say()
  say(`written: bench/results/capacity-${stamp}.md and .json`)
}

main().then(() => process.exit(0), (err) => {
  console.error(err)
  process.exit(1)
})
