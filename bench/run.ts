/**
 * `npm run bench`: this plugin against bare Fastify, a no-op provider (the limit), @fastify/bearer-auth
 * and a naive Drizzle lookup, in one run. The verdict is server CPU time per request, as ratios to a
 * reference measured in the same round. `npm run bench -- --help` tells the method and the options.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join, resolve as resolvePath } from 'node:path'
import { parseArgs } from 'node:util'
import { generateToken } from '../lib/store/token-format.js'
import type { LoadOptions } from './loader.js'
import { pinBackends } from './pg-pin.js'
import { canPin, startLoader, startServer, type Loader, type Server } from './procs.js'
import { seedBenchDatabase, type BenchDatabase } from './seed.js'
import { SCENARIOS, type Scenario, type ServerConfig } from './scenarios.js'
import { f0, f1, f2, LABELS, markdownTable, median, summarize, targetLine, targets, type Key, type Sample } from './report.js'

const METHOD = `Method (2 shared cores):
- --processes (default 3) long-lived server processes per scenario (\`node --import tsx
  bench/server.ts <name>\`): one process can run a whole run about 25% slower than an identical
  one (the same code, measured in the same minutes), so a scenario's figure in a round is the median
  of its processes; all of them started up front, pinned to core 0 (\`taskset -c 0\`), and warmed
  (--warmup-all s of load each) before anything is measured; servers are never restarted between
  rounds. Only the server being measured runs: the others are stopped (SIGSTOP) until their turn,
  because an idle Node process still wakes for timers and GC on the shared core (their database
  pools close when idle, so that they hold only their LISTEN connection meanwhile);
- the loader (autocannon, bench/loader.ts) is one long-lived process pinned to core 1; every
  scenario's requests come from a list of the same length (the 1,000 database tokens; the 10
  secrets and the one static key repeated to 1,000), so the loader's own work is the same;
- R rounds (--rounds); in each, every scenario in turn gets --warmup s of load (its cache refilled,
  its connections opened), then --duration s measured. The order rotates every round;
- the verdict is server CPU time per request: process.cpuUsage() of the server (all threads, user +
  system) over the measured window, sent over IPC (never HTTP, so nothing extra is counted),
  divided by the requests the loader saw answered. req/s is shown, but one loader on one core caps
  it near bare Fastify's rate, so it compresses the differences;
- a ratio is reference µs ÷ scenario µs of the same round (1.00: as cheap as the reference; 0.97:
  3% more CPU per request), then the median over rounds, with the range of the rounds beside it.
  Per-round ratios pair measurements taken close together in time, and the median ignores a round
  that another process on the machine disturbed; a ratio of minima would take each scenario's
  luckiest moment, with no guarantee the two were equally lucky;
- references: bare Fastify for every scenario; the no-op provider (the plugin's whole path, a
  provider that answers at once: the limit for any provider) for this plugin's scenarios;
  \`bare2\` is a second, identical bare server: bare2/bare is the run's own noise and should be
  within 0.97–1.03; \`hash-only\` is the no-op plus the token's SHA-256 as the providers make it
  (lib/sha256.ts): the floor of any provider that keeps no token in the clear;
- PostgreSQL is the machine's; its backends are not pinned (they share both cores) unless
  --pin-pg, which moves the bench database's backends to the loader's core 1 before every
  measurement, so that they do not compete with the server measured on core 0.`

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '2' },
    processes: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '1' },
    'warmup-all': { type: 'string', default: '3' },
    only: { type: 'string' },
    tokens: { type: 'string', default: '10000' },
    'login-flood': { type: 'boolean', default: false },
    'login-connections': { type: 'string', default: '8' },
    'database-url': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'pin-pg': { type: 'boolean', default: false },
    'keep-db': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    compare: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

function TABLE_SCENARIOS (): Scenario[] { return SCENARIOS.filter((s) => s !== 'login') }
/** Always measured: the references every ratio is taken against. */
const REFERENCES: Scenario[] = ['bare', 'bare2', 'noop']

if (args.help) {
  console.log(`npm run bench -- [options]

${METHOD}

Options:
  --duration S          measured seconds per server and round (default 2)
  --processes N         server processes per scenario (default 3)
  --rounds N            rounds, the scenario order rotating each round (default 5)
  --warmup S            load before each measurement, not measured (default 1)
  --warmup-all S        load on each server once, after they all started (default 3)
  --connections N       autocannon connections (default 50)
  --only a,b            only these scenarios (and always ${REFERENCES.join(', ')}; 'none' for just those)
                        (${TABLE_SCENARIOS().join(', ')})
  --tokens N            filler token rows in the table (default 10000; 1000000 for the scale check)
  --login-flood         also run the login flood (POST /login + protected route, event-loop delay),
                        on a server of its own after the rounds
  --login-connections N autocannon connections on /login during the flood (default 8)
  --database-url URL    admin URL of the PostgreSQL server (default $BENCH_DATABASE_URL, $DATABASE_URL,
                        or postgres://postgres@127.0.0.1:5432/test); the bench creates and drops
                        its own database, token_auth_bench
  --no-pin              do not pin servers and loader to cores 0 and 1 with taskset
  --pin-pg              pin the bench database's PostgreSQL backends to core 1 (needs the right to
                        taskset the postgres processes, e.g. root)
  --keep-db             keep the token_auth_bench database afterwards
  --compare DIR         also run this plugin's scenarios on the lib/ of another checkout (a candidate
                        change), as '<scenario>@candidate' rows in the same rotated rounds
  --cpu-prof            run each server with node --cpu-prof (whole lifetime; profiles in
                        bench/results/profiles/<scenario>-*/; summarize one with
                        npx tsx bench/profile.ts bench/results/profiles/<scenario>-<time>/)

Time: about processes × (scenarios × rounds × (duration + warmup + 0.5) + scenarios × warmup-all)
seconds; with the defaults and every scenario, about 13 minutes. Results go to bench/results/<date>.json and
.md (ignored by git).`)
  process.exit(0)
}

function positiveInt (name: string, value: string | undefined, min = 1): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new TypeError(`--${name} must be an integer ≥ ${min}, got ${value}`)
  return n
}

const duration = positiveInt('duration', args.duration)
const processes = positiveInt('processes', args.processes)
const rounds = positiveInt('rounds', args.rounds)
const connections = positiveInt('connections', args.connections)
const warmup = positiveInt('warmup', args.warmup, 0)
const warmupAll = positiveInt('warmup-all', args['warmup-all'], 0)
const fillerTokens = positiveInt('tokens', args.tokens, 0)
const loginConnections = positiveInt('login-connections', args['login-connections'])
// Logins take a second or so under load: give the flood enough time to complete many of them.
const floodSeconds = Math.max(duration, 10)
const pin = !args['no-pin'] && canPin()
const adminUrl = args['database-url'] ?? process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

let scenarios: Scenario[] = TABLE_SCENARIOS()
// A candidate lib/ (another checkout) for an A/B in the same run; its rows are keyed '<scenario>@candidate'.
const CANDIDATE = args.compare === undefined ? undefined : resolvePath(args.compare, 'lib')
const PLUGIN_SCENARIOS = new Set<Scenario>(['noop', 'hash-only', 'secret', 'db-warm', 'db-cold', 'reject-missing', 'reject-bad-checksum', 'reject-unknown-cold', 'reject-unknown-neg'])
const baseOf = (key: Key): Scenario => key.split('@')[0] as Scenario
if (args.only !== undefined) {
  const wanted = args.only.split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'none')
  for (const w of wanted) if (!TABLE_SCENARIOS().includes(w as Scenario)) throw new TypeError(`--only: unknown scenario ${w}`)
  scenarios = TABLE_SCENARIOS().filter((s) => REFERENCES.includes(s) || wanted.includes(s))
}

const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
const PROFILES = fileURLToPath(new URL('./results/profiles/', import.meta.url))

async function serverFor (key: Key, config: ServerConfig): Promise<{ server: Server, profileDir?: string }> {
  const scenario = baseOf(key)
  // One profile per thread (tsx's module hooks run on their own thread): the main thread's is the largest.
  const profileDir = args['cpu-prof'] ? `${PROFILES}${key.replace('@', '-')}-${Date.now()}` : undefined
  const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
  const server = await startServer(scenario, config, { pin, nodeFlags, lib: key.endsWith('@candidate') ? CANDIDATE : undefined })
  return { server, profileDir }
}

// ---- scenarios ----------------------------------------------------------------------------------

interface Plan { tokens: string[], expect: number }

/** `list` repeated (or cut) to `length` entries: every scenario's loader cycles through as many requests. */
const poolOf = (list: string[], length: number): string[] => Array.from({ length }, (_, i) => list[i % list.length])

function plan (scenario: Scenario, db: BenchDatabase, config: ServerConfig): Plan {
  const n = db.tokens.length
  switch (scenario) {
    // Every scenario goes through the loader's per-request setup (same loader cost): bare and noop get
    // the database tokens, which they do not read; reject-missing an empty pool, i.e. no header.
    case 'bare': case 'bare2': case 'noop': case 'hash-only': return { tokens: db.tokens, expect: 200 }
    case 'bearer-auth': return { tokens: poolOf([config.staticKey as string], n), expect: 200 }
    case 'secret': return { tokens: poolOf(config.secrets as string[], n), expect: 200 }
    case 'db-warm': case 'db-cold': case 'naive': case 'login': return { tokens: db.tokens, expect: 200 }
    case 'reject-missing': return { tokens: [], expect: 401 }
    case 'reject-bad-checksum': return { tokens: db.badChecksumTokens, expect: 401 }
    case 'reject-unknown-cold': case 'reject-unknown-neg': return { tokens: db.unknownTokens, expect: 401 }
  }
}

interface Running {
  key: Key
  server: Server
  load: LoadOptions
  expect: number
  /** With --cpu-prof: where its profile goes, and the measured windows beside it (windows.json). */
  profileDir?: string
  windows: Array<[number, number]>
}

/** Runs `r`'s server alone: the others are stopped once `r` has had its warm-up (meanwhile the one
 * measured before goes idle, and its database pool closes). */
async function alone (r: Running, all: Running[], seconds: number, loader: Loader): Promise<void> {
  r.server.resume()
  if (seconds > 0) await loader.load({ ...r.load, duration: seconds })
  for (const o of all) if (o !== r) o.server.pause()
}

async function measure (r: Running, round: number, loader: Loader, pinPg: (() => Promise<void>) | undefined, all: Running[]): Promise<Sample> {
  // Only the server measured runs; the others are stopped (SIGSTOP) until their turn.
  await alone(r, all, warmup, loader)
  await pinPg?.()
  await r.server.start()
  const load = await loader.load(r.load)
  const stats = await r.server.stop()
  if (r.profileDir !== undefined) {
    // bench/profile.ts counts only the samples inside these windows (not warm-ups, nor the stopped
    // spells, which the profile's next sample after a SIGCONT would carry as its own time).
    r.windows.push([stats.t0Us, stats.t1Us])
    mkdirSync(r.profileDir, { recursive: true })
    writeFileSync(join(r.profileDir, 'windows.json'), JSON.stringify(r.windows))
  }
  const expected = load.statusCounts[String(r.expect)] ?? 0
  return {
    round,
    rps: load.rps,
    p50: load.p50,
    p99: load.p99,
    cpuUsPerReq: stats.cpuUs / load.requests,
    loaderCpuPct: load.loaderCpuPct,
    requests: load.requests,
    unexpected: load.requests - expected,
    statusCounts: load.statusCounts,
    errors: load.errors
  }
}

/** A scenario's samples of one round (one per process) as one: the median process. */
function perRound (list: Sample[]): Sample[] {
  const rounds = [...new Set(list.map((s) => s.round))]
  return rounds.map((round) => {
    const of = list.filter((s) => s.round === round)
    const mid = (f: (s: Sample) => number): number => median(of.map(f))
    const statusCounts: Record<string, number> = {}
    for (const s of of) for (const [code, n] of Object.entries(s.statusCounts)) statusCounts[code] = (statusCounts[code] ?? 0) + n
    return {
      round,
      rps: mid((s) => s.rps),
      p50: mid((s) => s.p50),
      p99: mid((s) => s.p99),
      cpuUsPerReq: mid((s) => s.cpuUsPerReq),
      loaderCpuPct: mid((s) => s.loaderCpuPct),
      requests: of.reduce((n, s) => n + s.requests, 0),
      unexpected: of.reduce((n, s) => n + s.unexpected, 0),
      statusCounts,
      errors: of.reduce((n, s) => n + s.errors, 0)
    }
  })
}

// ---- login flood --------------------------------------------------------------------------------

interface FloodResult {
  loginAlone: { p50: number, p99: number, rps: number, statusCounts: Record<string, number> }
  protectedAlone: { rps: number, p99: number, eldP99: number, eldMax: number }
  flood: {
    protectedRps: number
    protectedP99: number
    loginRps: number
    loginP50: number
    loginP99: number
    loginStatus: Record<string, number>
    eldP50: number
    eldP99: number
    eldMax: number
    cpuUs: number
  }
}

async function loginFlood (db: BenchDatabase, config: ServerConfig, protectedLoader: Loader): Promise<FloodResult> {
  const loginLoader = await startLoader(pin)
  const server = await startServer('login', config, { pin })
  try {
    const login: LoadOptions = {
      url: `${server.url}/login`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: db.username, password: db.password, name: 'bench' }),
      connections: 1,
      duration
    }
    const guarded: LoadOptions = { url: `${server.url}/r`, tokens: db.tokens, connections, duration }
    // Login latency with nothing else running: one connection, logins back to back.
    const alone = await loginLoader.load(login)
    if ((alone.statusCounts['200'] ?? 0) === 0) throw new Error(`POST /login did not answer 200 (${JSON.stringify(alone.statusCounts)}): is lib/routes/login.ts in place?`)
    // The protected route alone, for its event-loop delay without logins.
    if (warmup > 0) await protectedLoader.load({ ...guarded, duration: warmup })
    await server.start()
    const g0 = await protectedLoader.load(guarded)
    const s0 = await server.stop()
    // Both at once.
    await server.start()
    const [g1, l1] = await Promise.all([
      protectedLoader.load({ ...guarded, duration: floodSeconds }),
      loginLoader.load({ ...login, connections: loginConnections, duration: floodSeconds })
    ])
    const s1 = await server.stop()
    return {
      loginAlone: { p50: alone.p50, p99: alone.p99, rps: alone.rps, statusCounts: alone.statusCounts },
      protectedAlone: { rps: g0.rps, p99: g0.p99, eldP99: s0.eld.p99, eldMax: s0.eld.max },
      flood: {
        protectedRps: g1.rps,
        protectedP99: g1.p99,
        loginRps: l1.rps,
        loginP50: l1.p50,
        loginP99: l1.p99,
        loginStatus: l1.statusCounts,
        eldP50: s1.eld.p50,
        eldP99: s1.eld.p99,
        eldMax: s1.eld.max,
        cpuUs: s1.cpuUs
      }
    }
  } finally {
    await server.close()
    loginLoader.close()
  }
}

function floodMarkdown (r: FloodResult): string {
  return [
    '| measure | value |',
    '|---|---:|',
    `| login median latency, alone (1 connection, default scrypt) | ${f1(r.loginAlone.p50)} ms (p99 ${f1(r.loginAlone.p99)} ms, ${f1(r.loginAlone.rps)} logins/s) |`,
    `| protected route alone: req/s, p99, event-loop delay p99 | ${f0(r.protectedAlone.rps)}, ${f1(r.protectedAlone.p99)} ms, ${f2(r.protectedAlone.eldP99)} ms |`,
    `| during the flood (${floodSeconds} s, ${loginConnections} connections on /login): protected req/s, p99 | ${f0(r.flood.protectedRps)}, ${f1(r.flood.protectedP99)} ms |`,
    `| during the flood: logins/s, login p50, p99 (status counts) | ${f1(r.flood.loginRps)}, ${f0(r.flood.loginP50)} ms, ${f0(r.flood.loginP99)} ms (${JSON.stringify(r.flood.loginStatus)}) |`,
    `| **during the flood: event-loop delay p99 (target < 20 ms)** | **${f2(r.flood.eldP99)} ms** (p50 ${f2(r.flood.eldP50)}, max ${f1(r.flood.eldMax)}) |`
  ].join('\n')
}

// ---- main ---------------------------------------------------------------------------------------

async function main (): Promise<void> {
  console.log(`seeding: ${fillerTokens.toLocaleString('en-US')} filler tokens ...`)
  const db = await seedBenchDatabase({ adminUrl, tokens: fillerTokens })
  console.log(`database ${db.name}: ${db.rows.toLocaleString('en-US')} token rows, seeded in ${(db.seedMs / 1000).toFixed(1)} s`)
  const config: ServerConfig = {
    url: db.url,
    secrets: Array.from({ length: 10 }, () => generateToken('svc')),
    staticKey: generateToken('key'),
    poolSize: 10,
    idleTimeout: 500
  }
  const pinPg = args['pin-pg'] ? () => pinBackends(adminUrl, db.name, 1) : undefined
  const loader = await startLoader(pin)
  const keys: Key[] = CANDIDATE === undefined
    ? scenarios
    : scenarios.flatMap((s): Key[] => PLUGIN_SCENARIOS.has(s) ? [s, `${s}@candidate`] : [s])
  const perProcess = new Map<Key, Sample[]>(keys.map((s) => [s, []]))
  const running: Running[] = []
  // Stopped servers would outlive an interrupted run: let them go on to their exit.
  process.once('SIGINT', () => { for (const r of running) r.server.resume(); process.exit(130) })
  const started = new Date()
  let flood: FloodResult | undefined
  try {
    // Every server up front, then each warmed (JIT, caches, pool connections) before any measurement.
    // A scenario's processes are started one after another but measured apart (rotation below).
    for (let p = 0; p < processes; p++) {
      for (const key of keys) {
        const { server, profileDir } = await serverFor(key, config)
        const { tokens, expect } = plan(baseOf(key), db, config)
        running.push({ key, server, expect, profileDir, windows: [], load: { url: `${server.url}/r`, tokens, connections, duration } })
      }
    }
    console.log(`${running.length} servers started; warming each for ${warmupAll} s ...`)
    for (const r of running) await alone(r, running, warmupAll, loader)
    for (let round = 0; round < rounds && running.length > 0; round++) {
      // Rotate by a whole share of the list each round, so that every scenario takes turns at every position.
      const k = Math.floor(round * running.length / rounds) % running.length
      const order = [...running.slice(k), ...running.slice(0, k)]
      console.log(`round ${round + 1}/${rounds}: ${order.map((r) => r.key).join(' → ')}`)
      for (const r of order) {
        const s = await measure(r, round, loader, pinPg, running)
        perProcess.get(r.key)?.push(s)
        console.log(`  ${r.key.padEnd(20)} ${f0(s.rps).padStart(7)} req/s  p99 ${f1(s.p99).padStart(6)} ms  ${f1(s.cpuUsPerReq).padStart(6)} µs/req  loader ${f0(s.loaderCpuPct)}%` +
          (s.unexpected > 0 ? `  UNEXPECTED: ${JSON.stringify(s.statusCounts)}` : ''))
      }
    }
    if (args['login-flood']) {
      // On a server of its own, once the others are gone (its logins use both cores).
      for (const r of running.splice(0)) await r.server.close()
      console.log('login flood ...')
      flood = await loginFlood(db, config, loader)
    }
  } finally {
    for (const r of running) await r.server.close()
    loader.close()
    // With --keep-db the admin connection must still end, or the bench never exits.
    await db.drop(args['keep-db'])
  }

  const rows = summarize(new Map([...perProcess].map(([key, list]) => [key, perRound(list)])))
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`
  const header = `${started.toISOString()} — ${machine}; ${keys.length} scenarios × ${processes} long-lived servers, ${rounds} rotated rounds × ${duration} s (+${warmup} s warm-up each, ${warmupAll} s once), ` +
    `${connections} connections, ${db.rows.toLocaleString('en-US')} token rows; servers ${pin ? 'on core 0' : 'unpinned'}, loader ${pin ? 'on core 1' : 'unpinned'}, ` +
    `PostgreSQL ${args['pin-pg'] ? 'backends on core 1' : 'unpinned'}`
  const tgs = targets(rows)
  let md = `# fastify-token-auth bench\n\n${header}\n\n` +
    `CPU ratios: reference µs ÷ scenario µs per round, median over ${rounds} rounds [lowest–highest round]; ` +
    'req/s, p99 and µs/req are medians over the rounds.\n\n'
  if (rows.length > 0) {
    md += markdownTable(rows, (k) => `${LABELS[baseOf(k)]}${k.endsWith('@candidate') ? ' **[candidate lib]**' : ''}`) + '\n\n'
    md += tgs.map(targetLine).join('\n') + '\n'
  }
  if (flood !== undefined) md += `\n## Login flood\n\n${floodMarkdown(flood)}\n`
  console.log('\n' + md)

  mkdirSync(RESULTS, { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const json = {
    started: started.toISOString(),
    machine,
    options: { duration, processes, rounds, connections, warmup, warmupAll, tokens: fillerTokens, rows: db.rows, pin, pinPg: args['pin-pg'] },
    rows,
    targets: tgs,
    loginFlood: flood
  }
  writeFileSync(`${RESULTS}${stamp}.json`, JSON.stringify(json, null, 2))
  writeFileSync(`${RESULTS}${stamp}.md`, md)
  writeFileSync(`${RESULTS}latest.md`, md)
  console.log(`written: bench/results/${stamp}.json and .md`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
