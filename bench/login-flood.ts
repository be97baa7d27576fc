/**
 * Login under attack (issue 11): does a flood of wrong-password logins deny logins to others, and do
 * failed logins take the same time whatever the account? Two modes:
 *
 *   npm run bench:login -- [--mode flood|timing|all] [--seconds 25] [--attackers 20] [--lone 30]
 *                          [--rounds 30] [--load autocannon|flood|none] [--database-url URL] [--no-pin]
 *
 * A real server (bench/login-server.ts: the plugin's routes at the app's defaults, scrypt N = 2^17,
 * the throttle's counters in PostgreSQL) runs pinned to core 0; this process (the clients) pins
 * itself to core 1. The database is a throwaway one (`token_auth_loginbench`, dropped after) on the
 * server of --database-url (default $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test).
 * Clients pick their source address with `localAddress` (every 127.0.0.0/8 address reaches the
 * server): the attacker is 127.0.0.2, the victim 127.0.0.3 (127.0.0.4: the victim on a new device).
 *
 * flood: per case, a lone victim first (sequential correct logins: the lone p50/p95; it also makes
 * 127.0.0.3 an address the account logs in from), then `--attackers` concurrent loops of
 * wrong-password logins for `--seconds` while the victim goes on with its sequential correct logins
 * (each token is logged out again, untimed, so the per-user token limit never interferes). The
 * attacker's mix: half its guesses for `bob` (the targeted account), 30% for other real accounts,
 * 20% for names that do not exist. Cases: the victim is `alice` (an account the attacker leaves
 * alone), `bob` (the attacked account, from the owner's usual address), and `bob` from 127.0.0.4
 * (an address bob never logged in from: the per-account counter applies to it). Throttle counters
 * (not the known addresses) are cleared between cases. Targets: victim success >= 95% and victim
 * p95 < 2 x lone p95.
 *
 * timing: under background load (bench/login-load.ts: autocannon, 8 connections, on a protected
 * route from core 1; or the flood; or none), started after 4 unrecorded rounds, interleaved rounds
 * of failed logins, one each per round in a shuffled order, for an unknown user, a wrong
 * password, a deactivated user (right password) and a user whose hash has a cheaper cost (ln=15);
 * the server's throttle limits are raised out of reach there (it still reads and counts). Target:
 * medians within 10% (max/min <= 1.10). The median of the first 5 rounds under load is shown
 * apart: it shows whether the padding of cheaper hashes follows a load that has just started
 * (lib/store/equal-time.ts).
 *
 * Run it under `flock /tmp/bench.lock` on a shared machine. Results: stdout, and JSON in bench/results/.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { createDatabase } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'
import { quantile } from './report.js'

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'all' },
    seconds: { type: 'string', default: '25' },
    attackers: { type: 'string', default: '20' },
    lone: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '30' },
    load: { type: 'string', default: 'autocannon' },
    'database-url': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})
if (args.help) {
  console.log('usage: npm run bench:login -- [--mode flood|timing|all] [--seconds 25] [--attackers 20] [--lone 30] [--rounds 30] [--load autocannon|flood|none] [--database-url URL] [--no-pin]')
  process.exit(0)
}
const int = (name: string, v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`--${name}: a positive integer, got ${v}`)
  return n
}
const MODE = args.mode
if (!['flood', 'timing', 'all'].includes(MODE)) throw new TypeError(`--mode: flood, timing or all, got ${MODE}`)
const LOAD = args.load
if (!['autocannon', 'flood', 'none'].includes(LOAD)) throw new TypeError(`--load: autocannon, flood or none, got ${LOAD}`)
const SECONDS = int('seconds', args.seconds)
const ATTACKERS = int('attackers', args.attackers)
const LONE = int('lone', args.lone)
const ROUNDS = int('rounds', args.rounds)
const PIN = !args['no-pin']
const ADMIN_URL = args['database-url'] ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const DB_NAME = 'token_auth_loginbench'
const SERVER = fileURLToPath(new URL('./login-server.ts', import.meta.url))
const LOAD_SCRIPT = fileURLToPath(new URL('./login-load.ts', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))

const ATTACKER = '127.0.0.2'
const VICTIM = '127.0.0.3'
const NEW_DEVICE = '127.0.0.4'
const PASSWORD = 'correct horse battery staple'
const OTHERS = Array.from({ length: 8 }, (_, i) => `user${String(i + 1).padStart(2, '0')}`)

// ---- the database -------------------------------------------------------------------------------

interface Seeded { url: string, loadToken: string, drop: () => Promise<void>, clearCounters: () => Promise<void> }

async function seed (): Promise<Seeded> {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`drop database if exists "${DB_NAME}" with (force)`)
  await admin.unsafe(`create database "${DB_NAME}"`)
  const u = new URL(ADMIN_URL)
  u.pathname = `/${DB_NAME}`
  const url = u.toString()
  const database = await createDatabase(url, { max: 4 })
  await migrate(database)
  const service = new TokenService(database) // the app's default cost (ln=17)
  for (const name of ['alice', 'bob', 'inactive', 'loadgen', ...OTHERS]) await service.createUser(name, PASSWORD)
  await service.deactivateUser('inactive')
  // A hash made with a cheaper cost (say, before the app raised it; or by a tool with other settings).
  await new TokenService(database, { passwordParams: { ln: 15 } }).createUser('cheap', PASSWORD)
  const { token: loadToken } = await service.issueToken({ username: 'loadgen' }, { name: 'background load' })
  await database.close()
  const bench = postgres(url, { max: 1, onnotice: () => {} })
  return {
    url,
    loadToken,
    // The failure counters only: the addresses accounts logged in from stay known.
    clearCounters: async () => { await bench.unsafe("delete from token_auth_throttle where key not like 'login:known:%'") },
    drop: async () => {
      await bench.end({ timeout: 5 })
      await admin.unsafe(`drop database if exists "${DB_NAME}" with (force)`)
      await admin.end({ timeout: 5 })
    }
  }
}

// ---- the server ---------------------------------------------------------------------------------

interface Server { port: number, close: () => Promise<void> }

function pinned (core: number, cmd: string, argv: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', String(core), cmd, ...argv]] : [cmd, argv]
}

async function startServer (url: string, throttle: 'default' | 'loose'): Promise<Server> {
  const [cmd, argv] = pinned(0, process.execPath, ['--import', 'tsx', SERVER])
  const child: ChildProcess = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, BENCH_URL: url, BENCH_THROTTLE: throttle } })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server: no ready message in 60 s')), 60_000)
    child.once('message', (msg: { type: string, port: number }) => { clearTimeout(timer); resolve(msg.port) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code})`)) })
  })
  return {
    port,
    async close () {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.send({ type: 'close' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}

// ---- HTTP clients -------------------------------------------------------------------------------

interface Answer { status: number | 'error', ms: number, body: string, /** performance.now() at the start */ at: number }

const agents = new Map<string, http.Agent>()
function agentFor (address: string): http.Agent {
  let agent = agents.get(address)
  if (agent === undefined) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 64, localAddress: address })
    agents.set(address, agent)
  }
  return agent
}

function request (port: number, from: string, method: string, path: string, body?: unknown, token?: string): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string> = {}
  if (payload !== undefined) headers['content-type'] = 'application/json'
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  const start = performance.now()
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: agentFor(from), localAddress: from }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - start, body: text, at: start }))
      res.on('error', () => resolve({ status: 'error', ms: performance.now() - start, body: '', at: start }))
    })
    req.on('error', (err) => resolve({ status: 'error', ms: performance.now() - start, body: err.message, at: start }))
    req.end(payload)
  })
}

const login = (port: number, from: string, username: string, password: string): Promise<Answer> =>
  request(port, from, 'POST', '/login', { username, password, name: 'bench' })

/** One correct login, timed; its token is logged out again (untimed) so the user's tokens stay few. */
async function victimLogin (port: number, from: string, username: string): Promise<Answer> {
  const answer = await login(port, from, username, PASSWORD)
  if (answer.status === 200) {
    const { token } = JSON.parse(answer.body) as { token: string }
    const out = await request(port, from, 'POST', '/logout', undefined, token)
    if (out.status !== 204) throw new Error(`logout: ${out.status} ${out.body}`)
  }
  return answer
}

// ---- figures ------------------------------------------------------------------------------------

const median = (values: number[]): number => quantile(values, 0.5)
const f0 = (n: number): string => Number.isFinite(n) ? n.toFixed(0) : '-'
const f2 = (n: number): string => Number.isFinite(n) ? n.toFixed(2) : '-'
function countBy<T> (items: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const it of items) out[key(it)] = (out[key(it)] ?? 0) + 1
  return out
}
const shuffle = <T>(items: T[]): T[] => {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

// ---- the flood ----------------------------------------------------------------------------------

let guesses = 0
/** The attacker's next guess: half for bob, 30% for the other accounts, 20% for names that do not exist. */
function nextGuess (): { username: string, password: string } {
  const r = Math.random()
  const n = guesses++
  const username = r < 0.5 ? 'bob' : r < 0.8 ? OTHERS[n % OTHERS.length] : `nobody${n}`
  return { username, password: `guess-${n}` }
}

interface Flood { stop: () => Promise<{ statusCounts: Record<string, number>, requests: number, seconds: number, checks: Array<[number, number]>, bySecond: Array<Record<string, number>> }> }

/** `loops` concurrent loops of wrong-password logins from `from`, until stopped. */
function startFlood (port: number, from: string, loops: number): Flood {
  const answers: Answer[] = []
  const state = { running: true }
  const started = performance.now()
  const loop = async (): Promise<void> => {
    while (state.running) {
      const g = nextGuess()
      answers.push(await login(port, from, g.username, g.password))
    }
  }
  const all = Promise.all(Array.from({ length: loops }, loop))
  return {
    async stop () {
      state.running = false
      await all
      // The attempts that reached a password check (a 401, not a refusal): [start, end] in ms from the flood's start.
      const checks = answers.filter((a) => a.status === 401).map((a): [number, number] => [a.at - started, a.at + a.ms - started])
      // Answers by the second they came in, for the first 8 s.
      const bySecond = Array.from({ length: 8 }, (_, i) => countBy(answers.filter((a) => Math.floor((a.at + a.ms - started) / 1000) === i), (a) => String(a.status)))
      return { statusCounts: countBy(answers, (a) => String(a.status)), requests: answers.length, seconds: (performance.now() - started) / 1000, checks, bySecond }
    }
  }
}

interface VictimFigures { attempts: number, success: number, statusCounts: Record<string, number>, p50: number, p95: number, max: number }

function victimFigures (answers: Answer[]): VictimFigures {
  const ok = answers.filter((a) => a.status === 200)
  const ms = answers.map((a) => a.ms) // every attempt's latency, refused ones too
  return { attempts: answers.length, success: ok.length / Math.max(1, answers.length), statusCounts: countBy(answers, (a) => String(a.status)), p50: median(ms), p95: quantile(ms, 0.95), max: Math.max(...ms) }
}

interface FloodCase {
  name: string
  victim: string
  from: string
  lone: VictimFigures | undefined
  flood: VictimFigures
  attacker: { statusCounts: Record<string, number>, requests: number, rps: number, checks: Array<[number, number]>, bySecond: Array<Record<string, number>> }
  /** The victim's logins over 1.5 × its lone p50: [start, end] in ms from the flood's start. */
  slow: Array<[number, number]>
}

async function floodCase (port: number, name: string, victim: string, from: string, lone: boolean, baseline?: VictimFigures): Promise<FloodCase> {
  let loneFigures: VictimFigures | undefined
  if (lone) {
    for (let i = 0; i < 3; i++) await victimLogin(port, from, victim) // warm-up; makes `from` known to the account
    const answers: Answer[] = []
    for (let i = 0; i < LONE; i++) answers.push(await victimLogin(port, from, victim))
    loneFigures = victimFigures(answers)
  }
  const flood = startFlood(port, ATTACKER, ATTACKERS)
  const floodStart = performance.now()
  await new Promise((resolve) => setTimeout(resolve, 500)) // the flood reaches its pace first
  const answers: Answer[] = []
  const end = performance.now() + (SECONDS - 0.5) * 1000
  while (performance.now() < end) answers.push(await victimLogin(port, from, victim))
  const attack = await flood.stop()
  const lonely = loneFigures ?? baseline
  const slowMs = 1.5 * (lonely?.p50 ?? Infinity)
  return {
    name,
    victim,
    from,
    lone: lonely,
    flood: victimFigures(answers),
    attacker: { statusCounts: attack.statusCounts, requests: attack.requests, rps: attack.requests / attack.seconds, checks: attack.checks, bySecond: attack.bySecond },
    slow: answers.filter((a) => a.ms > slowMs).map((a): [number, number] => [a.at - floodStart, a.at + a.ms - floodStart])
  }
}

async function floodMode (db: Seeded): Promise<FloodCase[]> {
  // A server of its own per case: what one case left in a server's memory (the per-process delays of
  // the attacker's address) must not help the next; the counters in the database are cleared.
  const inCase = async (run: (port: number) => Promise<FloodCase>): Promise<FloodCase> => {
    await db.clearCounters()
    const server = await startServer(db.url, 'default')
    try {
      const c = await run(server.port)
      console.log(floodRow(c))
      return c
    } finally {
      await server.close()
    }
  }
  const cases: FloodCase[] = []
  cases.push(await inCase((port) => floodCase(port, 'another account', 'alice', VICTIM, true)))
  cases.push(await inCase((port) => floodCase(port, 'the attacked account, usual address', 'bob', VICTIM, true)))
  // No lone run from the new device (that would make it known): compared with bob's lone figures.
  const lone = cases.at(-1)!.lone
  cases.push(await inCase((port) => floodCase(port, 'the attacked account, new address', 'bob', NEW_DEVICE, false, lone)))
  return cases
}

function floodRow (c: FloodCase): string {
  const lone = c.lone
  const ratio = lone === undefined ? NaN : c.flood.p95 / lone.p95
  const pass = c.flood.success >= 0.95 && ratio < 2
  return `| ${c.name} (${c.victim} from ${c.from}) | ${lone === undefined ? '-' : `${f0(lone.p50)} / ${f0(lone.p95)}`} | ` +
    `${(c.flood.success * 100).toFixed(1)}% of ${c.flood.attempts} ${JSON.stringify(c.flood.statusCounts)} | ${f0(c.flood.p50)} / ${f0(c.flood.p95)} (max ${f0(c.flood.max)}) | ` +
    `${f2(ratio)} | ${c.attacker.requests} (${f0(c.attacker.rps)}/s) ${JSON.stringify(c.attacker.statusCounts)} | ${pass ? 'yes' : 'NO'} |`
}

/** When the attacker's password checks ran and when the victim's slow logins did (ms from the flood's start). */
function floodTimeline (c: FloodCase): string {
  const span = (xs: Array<[number, number]>): string => xs.length === 0 ? 'none' : xs.map(([a, b]) => `${f0(a)}–${f0(b)}`).join(', ')
  return `  ${c.victim} from ${c.from}: attacker's password checks (401s) ${span(c.attacker.checks)}; victim's logins over 1.5 × lone p50: ${span(c.slow)}; ` +
    `attacker's answers by second: ${c.attacker.bySecond.map((x) => JSON.stringify(x)).join(' ')}`
}
const FLOOD_HEADER = '| victim | lone p50 / p95 ms | victim success during the flood | flood p50 / p95 ms | p95 ÷ lone p95 | attacker requests (rate) and statuses | targets met |\n|---|---|---|---|---|---|---|'

// ---- equal time ---------------------------------------------------------------------------------

interface TimingResult { load: string, rounds: number, cases: Record<string, { median: number, p25: number, p75: number, firstRounds: number, statusCounts: Record<string, number> }>, maxOverMin: number, background?: unknown }

/** Rounds right after the load starts, reported on their own: the padding follows the load with a lag. */
const FIRST_ROUNDS = 5

async function timingMode (db: Seeded): Promise<TimingResult> {
  const server = await startServer(db.url, 'loose')
  let n = 0
  const CASES: Record<string, { username: () => string, password: () => string }> = {
    'unknown user': { username: () => `nobody-${n++}`, password: () => `guess-${n++}` },
    'wrong password': { username: () => 'alice', password: () => `guess-${n++}` },
    'deactivated user (right password)': { username: () => 'inactive', password: () => PASSWORD },
    'cheaper hash (ln=15), wrong password': { username: () => 'cheap', password: () => `guess-${n++}` }
  }
  const names = Object.keys(CASES)
  const samples: Record<string, Answer[]> = Object.fromEntries(names.map((k) => [k, []]))
  let stopLoad = async (): Promise<unknown> => undefined
  let background: unknown
  try {
    const round = async (record: boolean): Promise<void> => {
      for (const name of shuffle(names)) {
        const c = CASES[name]
        const a = await login(server.port, VICTIM, c.username(), c.password())
        if (a.status !== 401) throw new Error(`${name}: ${a.status} ${a.body}`)
        if (record) samples[name].push(a)
      }
    }
    for (let i = 0; i < 4; i++) await round(false) // the service's timing samples fill first
    stopLoad = await startBackground(server.port, db.loadToken)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    for (let i = 0; i < ROUNDS; i++) await round(true)
  } finally {
    background = await stopLoad()
    await server.close()
  }
  const cases = Object.fromEntries(names.map((k) => {
    const ms = samples[k].map((a) => a.ms)
    return [k, { median: median(ms), p25: quantile(ms, 0.25), p75: quantile(ms, 0.75), firstRounds: median(ms.slice(0, FIRST_ROUNDS)), statusCounts: countBy(samples[k], (a) => String(a.status)) }]
  }))
  const medians = Object.values(cases).map((c) => c.median)
  return { load: LOAD, rounds: ROUNDS, cases, maxOverMin: Math.max(...medians) / Math.min(...medians), background }
}

/** The timing mode's background load; resolves to a function that stops it and returns its figures. */
async function startBackground (port: number, token: string): Promise<() => Promise<unknown>> {
  if (LOAD === 'none') return async () => undefined
  if (LOAD === 'flood') {
    // The flood's wrong passwords from 127.0.0.2: with the loose throttle they all reach the password queue.
    const flood = startFlood(port, ATTACKER, ATTACKERS)
    return async () => await flood.stop()
  }
  // autocannon on the protected route, in a process of its own on core 1, until stopped.
  const [cmd, argv] = pinned(1, process.execPath, ['--import', 'tsx', LOAD_SCRIPT, `http://127.0.0.1:${port}/r`, token, '8'])
  const child = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const message = (type: string): Promise<unknown> => new Promise((resolve, reject) => {
    child.on('message', (msg: { type: string }) => { if (msg.type === type) resolve(msg) })
    child.once('exit', (code) => reject(new Error(`load: exited (${code}) before ${type}`)))
  })
  await message('ready')
  return async () => {
    const done = message('done')
    child.send({ type: 'stop' })
    return await done
  }
}

function timingTable (t: TimingResult): string {
  const lines = [`| failed login | median ms (p25–p75) | ÷ lowest median | median of the first ${FIRST_ROUNDS} rounds under load |`, '|---|---|---|---|']
  const lowest = Math.min(...Object.values(t.cases).map((c) => c.median))
  for (const [name, c] of Object.entries(t.cases)) lines.push(`| ${name} | ${f0(c.median)} (${f0(c.p25)}–${f0(c.p75)}) | ${f2(c.median / lowest)} | ${f0(c.firstRounds)} |`)
  lines.push(`\nmax/min of the medians: ${t.maxOverMin.toFixed(3)} (${t.maxOverMin <= 1.10 ? 'within' : 'NOT within'} 10%); ${t.rounds} rounds; background: ${t.load} ${JSON.stringify(t.background)}`)
  return lines.join('\n')
}

// ---- main ---------------------------------------------------------------------------------------

async function main (): Promise<void> {
  if (PIN) spawnSync('taskset', ['-a', '-pc', '1', String(process.pid)], { stdio: 'ignore' })
  const started = new Date()
  const load = (await import('node:os')).loadavg()
  console.log(`login bench: ${started.toISOString()}, load average ${load.map((l) => l.toFixed(2)).join(' ')}, ${PIN ? 'server on core 0, clients on core 1' : 'not pinned'}`)
  const db = await seed()
  const result: { started: string, loadavg: number[], flood?: FloodCase[], timing?: TimingResult } = { started: started.toISOString(), loadavg: load }
  try {
    if (MODE !== 'timing') {
      console.log(`\nflood: ${ATTACKERS} loops of wrong-password logins from ${ATTACKER} for ${SECONDS} s; lone: ${LONE} sequential logins\n\n${FLOOD_HEADER}`)
      result.flood = await floodMode(db)
      console.log('\ntimeline (ms from the start of the flood):\n' + result.flood.map(floodTimeline).join('\n'))
    }
    if (MODE !== 'flood') {
      console.log(`\ntiming: ${ROUNDS} interleaved rounds under ${LOAD}`)
      result.timing = await timingMode(db)
      console.log(timingTable(result.timing))
    }
  } finally {
    await db.drop()
    for (const agent of agents.values()) agent.destroy()
  }
  mkdirSync(RESULTS, { recursive: true })
  const file = `${RESULTS}login-${started.toISOString().replace(/[:.]/g, '-')}.json`
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  console.log(`\nload average at the end ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}; JSON: ${file}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
