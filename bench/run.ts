/**
 * `npm run bench`: this plugin against bare Fastify, @fastify/bearer-auth and a naive Drizzle lookup,
 * in one run, as ratios to bare Fastify measured in the same round.
 *
 *   npm run bench -- [--duration 5] [--rounds 3] [--connections 50] [--only a,b] [--tokens N]
 *                    [--login-flood] [--login-connections 8] [--warmup 1] [--database-url URL]
 *                    [--no-pin] [--keep-db]
 *
 * Method (2 shared cores, where two identical servers differ by up to 15% in req/s):
 * - every scenario-round starts a fresh server process (`node --import tsx bench/server.ts <name>`)
 *   pinned to core 0 (`taskset -c 0`); the loader (autocannon, bench/loader.ts) is one long-lived
 *   process pinned to core 1. PostgreSQL is the machine's and is not pinned: its backends share both
 *   cores (they compete with the server in the database scenarios, as they would in production);
 * - each scenario gets a warm-up (`--warmup` s) before the measured `--duration` s;
 * - the order of scenarios rotates every round, and ratios are taken per round (scenario / bare of
 *   that round), then the median over rounds is reported;
 * - the server reports its own CPU time (process.cpuUsage, all threads) over the measured window by
 *   IPC, not through HTTP, so nothing extra is counted; CPU µs per request is the number least
 *   disturbed by noise and by a saturated loader (the loader's own CPU % is shown to tell).
 * Results go to bench/results/<date>.json and .md (ignored by git).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { resolve as resolvePath } from 'node:path'
import { parseArgs } from 'node:util'
import { generateToken } from '../lib/store/token-format.js'
import type { LoadOptions, LoadSummary } from './loader.js'
import { seedBenchDatabase, type BenchDatabase } from './seed.js'
import { SCENARIOS, type Scenario, type ServerConfig } from './scenarios.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '1' },
    only: { type: 'string' },
    tokens: { type: 'string', default: '10000' },
    'login-flood': { type: 'boolean', default: false },
    'login-connections': { type: 'string', default: '8' },
    'database-url': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'keep-db': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    compare: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

if (args.help) {
  console.log(`npm run bench -- [options]
  --duration S          measured seconds per scenario and round (default 5)
  --rounds N            rounds, the scenario order rotating each round (default 3)
  --connections N       autocannon connections (default 50)
  --warmup S            warm-up seconds before each measurement (default 1)
  --only a,b            only these scenarios ('none' for none); bare is always added
                        (${TABLE_SCENARIOS().join(', ')})
  --tokens N            filler token rows in the table (default 10000; 1000000 for the scale check)
  --login-flood         also run the login flood (POST /login + protected route, event-loop delay)
  --login-connections N autocannon connections on /login during the flood (default 8)
  --database-url URL    admin URL of the PostgreSQL server (default $BENCH_DATABASE_URL, $DATABASE_URL,
                        or postgres://postgres@127.0.0.1:5432/test); the bench creates and drops
                        its own database, token_auth_bench
  --no-pin              do not pin server and loader to cores 0 and 1 with taskset
  --keep-db             keep the token_auth_bench database afterwards
  --compare DIR         also run this plugin's scenarios on the lib/ of another checkout (a candidate
                        change), as '<scenario>@candidate' rows in the same rotated rounds
  --cpu-prof            run each server with node --cpu-prof (profiles in bench/results/profiles/<scenario>-*/;
                        summarize with: npx tsx bench/profile.ts <dir or file.cpuprofile>)`)
  process.exit(0)
}

function TABLE_SCENARIOS (): Scenario[] { return SCENARIOS.filter((s) => s !== 'login') }

function positiveInt (name: string, value: string | undefined, min = 1): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new TypeError(`--${name} must be an integer ≥ ${min}, got ${value}`)
  return n
}

const duration = positiveInt('duration', args.duration)
const rounds = positiveInt('rounds', args.rounds)
const connections = positiveInt('connections', args.connections)
const warmup = positiveInt('warmup', args.warmup, 0)
const fillerTokens = positiveInt('tokens', args.tokens, 0)
const loginConnections = positiveInt('login-connections', args['login-connections'])
// Logins take a second or so under load: give the flood enough time to complete many of them.
const floodSeconds = Math.max(duration, 10)
const pin = !args['no-pin'] && cpus().length >= 2
const adminUrl = args['database-url'] ?? process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

let scenarios: Scenario[] = TABLE_SCENARIOS()
// A candidate lib/ (another checkout) for an A/B in the same run; its rows are keyed '<scenario>@candidate'.
const CANDIDATE = args.compare === undefined ? undefined : resolvePath(args.compare, 'lib')
const PLUGIN_SCENARIOS = new Set<Scenario>(['secret', 'db-warm', 'db-cold', 'reject-missing', 'reject-bad-checksum', 'reject-unknown-cold', 'reject-unknown-neg'])
type Key = Scenario | `${Scenario}@candidate`
const baseOf = (key: Key): Scenario => key.split('@')[0] as Scenario
if (args.only !== undefined) {
  const wanted = args.only.split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'none')
  for (const w of wanted) if (!TABLE_SCENARIOS().includes(w as Scenario)) throw new TypeError(`--only: unknown scenario ${w}`)
  scenarios = wanted.length === 0 ? [] : TABLE_SCENARIOS().filter((s) => s === 'bare' || wanted.includes(s))
}

const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url))
const LOADER = fileURLToPath(new URL('./loader.ts', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))

// ---- child processes ----------------------------------------------------------------------------

const PROFILES = fileURLToPath(new URL('./results/profiles/', import.meta.url))

function spawnNode (core: number, script: string, argv: string[], env: NodeJS.ProcessEnv, nodeFlags: string[] = []): ChildProcess {
  const nodeArgs = [...nodeFlags, '--import', 'tsx', script, ...argv]
  const [cmd, cmdArgs] = pin ? ['taskset', ['-c', String(core), process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs]
  return spawn(cmd, cmdArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env })
}

function nextMessage<T> (child: ChildProcess, type: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timeout waiting for ${type}`)) }, timeoutMs)
    const onMessage = (msg: { type: string }): void => { if (msg.type === type) { cleanup(); resolve(msg as T) } }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`child exited (${code}) before ${type}`)) }
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

interface Loader { load: (options: LoadOptions) => Promise<LoadSummary>, close: () => void }

async function startLoader (): Promise<Loader> {
  const child = spawnNode(1, LOADER, [], process.env)
  await nextMessage(child, 'ready')
  let ids = 0
  return {
    async load (options) {
      const id = ++ids
      const done = new Promise<{ summary?: LoadSummary, error?: string }>((resolve) => {
        const onMessage = (msg: { type: string, id: number, summary?: LoadSummary, error?: string }): void => {
          if (msg.type === 'result' && msg.id === id) { child.off('message', onMessage); resolve(msg) }
        }
        child.on('message', onMessage)
      })
      child.send({ type: 'run', id, options })
      const msg = await done
      if (msg.summary === undefined) throw new Error(`loader: ${msg.error}`)
      return msg.summary
    },
    close () { child.send({ type: 'exit' }) }
  }
}

interface ServerStats { cpuUs: number, wallMs: number, eld: { p50: number, p99: number, max: number, mean: number }, rssMb: number }
interface Server { url: string, start: () => Promise<void>, stop: () => Promise<ServerStats>, close: () => Promise<void> }

async function startServer (scenario: Scenario, config: ServerConfig, lib?: string): Promise<Server> {
  // One profile per thread (tsx's module hooks run on their own thread): the main thread's is the
  // largest. A scenario's profiles go to a directory of their own.
  const flags = args['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', `${PROFILES}${scenario}-${Date.now()}`] : []
  const env = { ...process.env, BENCH_CONFIG: JSON.stringify(config), ...(lib === undefined ? {} : { BENCH_LIB: lib }) }
  const child = spawnNode(0, SERVER, [scenario], env, flags)
  const { port } = await nextMessage<{ port: number }>(child, 'ready')
  return {
    url: `http://127.0.0.1:${port}`,
    async start () { child.send({ type: 'start' }); await nextMessage(child, 'started') },
    async stop () { child.send({ type: 'stop' }); return await nextMessage<ServerStats>(child, 'stopped') },
    async close () {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.send({ type: 'close' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}

// ---- scenarios ----------------------------------------------------------------------------------

interface Plan { headers: Record<string, string>, tokens?: string[], expect: number }

function plan (scenario: Scenario, db: BenchDatabase, config: ServerConfig): Plan {
  switch (scenario) {
    // Every scenario goes through the loader's per-request setup (same loader cost): bare gets the
    // database tokens, which nobody reads; reject-missing an empty pool, i.e. no header.
    case 'bare': return { headers: {}, tokens: db.tokens, expect: 200 }
    case 'bearer-auth': return { headers: {}, tokens: [config.staticKey as string], expect: 200 }
    case 'secret': return { headers: {}, tokens: config.secrets, expect: 200 }
    case 'db-warm': case 'db-cold': case 'naive': case 'login': return { headers: {}, tokens: db.tokens, expect: 200 }
    case 'reject-missing': return { headers: {}, tokens: [], expect: 401 }
    case 'reject-bad-checksum': return { headers: {}, tokens: db.badChecksumTokens, expect: 401 }
    case 'reject-unknown-cold': case 'reject-unknown-neg': return { headers: {}, tokens: db.unknownTokens, expect: 401 }
  }
}

interface Sample {
  round: number
  rps: number
  p50: number
  p99: number
  cpuUsPerReq: number
  loaderCpuPct: number
  requests: number
  unexpected: number
  statusCounts: Record<string, number>
  errors: number
}

async function measure (key: Key, round: number, loader: Loader, db: BenchDatabase, config: ServerConfig): Promise<Sample> {
  const scenario = baseOf(key)
  const server = await startServer(scenario, config, key.endsWith('@candidate') ? CANDIDATE : undefined)
  try {
    const { headers, tokens, expect } = plan(scenario, db, config)
    const options: LoadOptions = { url: `${server.url}/r`, headers, tokens, connections, duration }
    if (warmup > 0) await loader.load({ ...options, duration: warmup })
    await server.start()
    const load = await loader.load(options)
    const stats = await server.stop()
    const expected = load.statusCounts[String(expect)] ?? 0
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
  } finally {
    await server.close()
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

interface Row {
  scenario: Key
  rps: number
  ratio: number
  p99: number
  cpuUsPerReq: number
  cpuRatio: number
  loaderCpuPct: number
  unexpected: number
  samples: Sample[]
}

function summarize (samples: Map<Key, Sample[]>): Row[] {
  const bare = samples.get('bare') ?? []
  const bareOf = (round: number): Sample | undefined => bare.find((s) => s.round === round)
  return [...samples.entries()].map(([scenario, list]) => ({
    scenario,
    rps: median(list.map((s) => s.rps)),
    ratio: median(list.map((s) => s.rps / (bareOf(s.round)?.rps ?? NaN))),
    p99: median(list.map((s) => s.p99)),
    cpuUsPerReq: median(list.map((s) => s.cpuUsPerReq)),
    cpuRatio: median(list.map((s) => (bareOf(s.round)?.cpuUsPerReq ?? NaN) / s.cpuUsPerReq)),
    loaderCpuPct: median(list.map((s) => s.loaderCpuPct)),
    unexpected: list.reduce((a, s) => a + s.unexpected, 0),
    samples: list
  }))
}

const LABELS: Record<Scenario, string> = {
  bare: 'bare Fastify (reference)',
  'bearer-auth': '@fastify/bearer-auth, 1 static key',
  secret: 'this plugin, SecretTokenAuthProvider (10 tokens)',
  'db-warm': 'this plugin, database provider, cache warm',
  'db-cold': 'this plugin, database provider, cache off (cold)',
  naive: 'naive Drizzle lookup per request (baseline)',
  'reject-missing': 'rejection: no Authorization header',
  'reject-bad-checksum': 'rejection: bad checksum token',
  'reject-unknown-cold': 'rejection: unknown token, cache off (cold)',
  'reject-unknown-neg': 'rejection: unknown token, negative cache',
  login: 'login flood'
}

interface Target { name: string, value: number, min: number, met: boolean }

function targets (rows: Row[]): Target[] {
  const get = (s: Key): Row | undefined => rows.find((r) => r.scenario === s)
  const out: Target[] = []
  const add = (name: string, value: number | undefined, min: number): void => {
    if (value !== undefined && !Number.isNaN(value)) out.push({ name, value, min, met: value >= min })
  }
  add('secret / bare ≥ 0.95', get('secret')?.ratio, 0.95)
  add('db warm / bare ≥ 0.90', get('db-warm')?.ratio, 0.90)
  add('bad checksum / bare ≥ 0.90', get('reject-bad-checksum')?.ratio, 0.90)
  add('missing header / bare ≥ 0.90', get('reject-missing')?.ratio, 0.90)
  const cold = get('db-cold'); const naive = get('naive')
  if (cold !== undefined && naive !== undefined) {
    const perRound = cold.samples.map((s) => s.rps / (naive.samples.find((n) => n.round === s.round)?.rps ?? NaN))
    add('db cold / naive ≥ 1.2', median(perRound), 1.2)
  }
  return out
}

const f0 = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(1) : '–'
const f2 = (n: number): string => Number.isFinite(n) ? n.toFixed(2) : '–'

function markdownTable (rows: Row[]): string {
  const lines = [
    '| scenario | req/s | ratio to bare | p99 ms | server CPU µs/req | CPU ratio (bare µs / µs) | loader CPU % | unexpected status |',
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    lines.push(`| ${LABELS[baseOf(r.scenario)]}${r.scenario.endsWith('@candidate') ? ' **[candidate lib]**' : ''} | ${f0(r.rps)} | ${f2(r.ratio)} | ${f1(r.p99)} | ${f1(r.cpuUsPerReq)} | ${f2(r.cpuRatio)} | ${f0(r.loaderCpuPct)} | ${r.unexpected} |`)
  }
  return lines.join('\n')
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
  const loginLoader = await startLoader()
  const server = await startServer('login', config)
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
    poolSize: 10
  }
  const loader = await startLoader()
  const keys: Key[] = CANDIDATE === undefined
    ? scenarios
    : scenarios.flatMap((s): Key[] => PLUGIN_SCENARIOS.has(s) ? [s, `${s}@candidate`] : [s])
  const samples = new Map<Key, Sample[]>(keys.map((s) => [s, []]))
  const started = new Date()
  let rows: Row[] = []
  let flood: FloodResult | undefined
  try {
    const step = Math.max(1, Math.floor(keys.length / rounds))
    for (let round = 0; round < rounds && keys.length > 0; round++) {
      const k = (round * step) % keys.length
      const order = [...keys.slice(k), ...keys.slice(0, k)]
      console.log(`round ${round + 1}/${rounds}: ${order.join(' → ')}`)
      for (const scenario of order) {
        const s = await measure(scenario, round, loader, db, config)
        samples.get(scenario)?.push(s)
        console.log(`  ${scenario.padEnd(20)} ${f0(s.rps).padStart(7)} req/s  p99 ${f1(s.p99).padStart(6)} ms  ${f1(s.cpuUsPerReq).padStart(6)} µs/req  loader ${f0(s.loaderCpuPct)}%` +
          (s.unexpected > 0 ? `  UNEXPECTED: ${JSON.stringify(s.statusCounts)}` : ''))
      }
    }
    rows = summarize(samples)
    if (args['login-flood']) {
      console.log('login flood ...')
      flood = await loginFlood(db, config, loader)
    }
  } finally {
    loader.close()
    if (!args['keep-db']) await db.drop()
  }

  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`
  const header = `${started.toISOString()} — ${machine}; ${rounds} rounds × ${duration} s (+${warmup} s warm-up), ` +
    `${connections} connections, ${db.rows.toLocaleString('en-US')} token rows; server ${pin ? 'on core 0' : 'unpinned'}, loader ${pin ? 'on core 1' : 'unpinned'}, PostgreSQL unpinned`
  const tgs = targets(rows)
  let md = `# fastify-token-auth bench\n\n${header}\n\nMedians of ${rounds} rounds; ratios are per round (scenario ÷ bare Fastify of the same round), then the median.\n\n`
  if (rows.length > 0) {
    md += markdownTable(rows) + '\n\n'
    md += tgs.map((t) => `- ${t.met ? 'met' : 'MISSED'}: ${t.name}: ${f2(t.value)}${t.met ? '' : ` (short by ${f2(t.min - t.value)})`}`).join('\n') + '\n'
  }
  if (flood !== undefined) md += `\n## Login flood\n\n${floodMarkdown(flood)}\n`
  console.log('\n' + md)

  mkdirSync(RESULTS, { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const json = {
    started: started.toISOString(),
    machine,
    options: { duration, rounds, connections, warmup, tokens: fillerTokens, rows: db.rows, pin },
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
