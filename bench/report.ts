/** The bench's arithmetic and its table: per-round CPU ratios to a reference, medians, targets. */
import type { Scenario } from './scenarios.js'

export type Key = Scenario | `${Scenario}@candidate`

export interface Sample {
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

export interface Ratio { median: number, min: number, max: number }

export interface Row {
  scenario: Key
  rps: number
  p99: number
  cpuUsPerReq: number
  /** bare µs ÷ scenario µs, per round. */
  toBare: Ratio
  /** noop µs ÷ scenario µs, per round (this plugin's scenarios). */
  toNoop: Ratio | undefined
  loaderCpuPct: number
  unexpected: number
  samples: Sample[]
}

/** The value at quantile `q` (the smallest with at least q of the values at or below it); NaN for none. */
export function quantile (values: number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
}

export const median = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** reference µs ÷ µs of each round both were measured in: the median and the range. */
export function cpuRatio (list: Sample[], reference: Sample[]): Ratio {
  const per = list.map((s) => (reference.find((r) => r.round === s.round)?.cpuUsPerReq ?? NaN) / s.cpuUsPerReq).filter((x) => !Number.isNaN(x))
  return { median: median(per), min: Math.min(...per), max: Math.max(...per) }
}

const NOOP_RELATIVE = new Set<Scenario>(['hash-only', 'secret', 'db-warm', 'db-cold', 'reject-missing', 'reject-bad-checksum', 'reject-unknown-cold', 'reject-unknown-neg'])

export function summarize (samples: Map<Key, Sample[]>): Row[] {
  const bare = samples.get('bare') ?? []
  const noop = samples.get('noop')
  return [...samples.entries()].map(([scenario, list]) => ({
    scenario,
    rps: median(list.map((s) => s.rps)),
    p99: median(list.map((s) => s.p99)),
    cpuUsPerReq: median(list.map((s) => s.cpuUsPerReq)),
    toBare: cpuRatio(list, bare),
    toNoop: noop !== undefined && NOOP_RELATIVE.has(scenario.split('@')[0] as Scenario) ? cpuRatio(list, noop) : undefined,
    loaderCpuPct: median(list.map((s) => s.loaderCpuPct)),
    unexpected: list.reduce((a, s) => a + s.unexpected, 0),
    samples: list
  }))
}

export interface Target { name: string, value: number, min: number, max?: number, met: boolean }

export function targets (rows: Row[]): Target[] {
  const get = (s: Key): Row | undefined => rows.find((r) => r.scenario === s)
  const out: Target[] = []
  const add = (name: string, value: number | undefined, min: number, max = Infinity): void => {
    if (value !== undefined && !Number.isNaN(value)) out.push({ name, value, min, max: Number.isFinite(max) ? max : undefined, met: value >= min && value <= max })
  }
  add('bare2 / bare within 0.97–1.03 (the run\'s own noise)', get('bare2')?.toBare.median, 0.97, 1.03)
  add('secret / noop ≥ 0.97', get('secret')?.toNoop?.median, 0.97)
  add('db warm / noop ≥ 0.96', get('db-warm')?.toNoop?.median, 0.96)
  add('bad checksum / bare ≥ 0.90', get('reject-bad-checksum')?.toBare.median, 0.90)
  add('missing header / bare ≥ 0.90', get('reject-missing')?.toBare.median, 0.90)
  add('db cold / bare ≥ 0.40', get('db-cold')?.toBare.median, 0.40)
  const cold = get('db-cold'); const naive = get('naive')
  if (cold !== undefined && naive !== undefined) add('db cold / naive ≥ 1.2', cpuRatio(cold.samples, naive.samples).median, 1.2)
  return out
}

/** `- met: name: 0.966` / `- MISSED: name: 0.966 (short by 0.004)`: three decimals, so that a miss
 * never reads as the target itself. */
export function targetLine (t: Target): string {
  const f3 = (n: number): string => n.toFixed(3)
  const gap = t.met ? '' : t.value < t.min ? ` (short by ${f3(t.min - t.value)})` : ` (over by ${f3(t.value - (t.max ?? Infinity))})`
  return `- ${t.met ? 'met' : 'MISSED'}: ${t.name}: ${f3(t.value)}${gap}`
}

export const f0 = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
export const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(1) : '–'
export const f2 = (n: number): string => Number.isFinite(n) ? n.toFixed(2) : '–'
const ratio = (r: Ratio | undefined): string => r === undefined || !Number.isFinite(r.median) ? '–' : `${f2(r.median)} [${f2(r.min)}–${f2(r.max)}]`

export const LABELS: Record<Scenario, string> = {
  bare: 'bare Fastify (reference)',
  bare2: 'bare Fastify, a second identical server (noise check)',
  noop: 'this plugin, a provider that answers at once (the limit)',
  'hash-only': 'this plugin, a provider that only hashes the token (the floor of hashing)',
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

export function markdownTable (rows: Row[], label: (k: Key) => string): string {
  const lines = [
    '| scenario | server CPU µs/req | CPU ratio to bare | CPU ratio to no-op | req/s | p99 ms | loader CPU % | unexpected status |',
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    lines.push(`| ${label(r.scenario)} | ${f1(r.cpuUsPerReq)} | ${ratio(r.toBare)} | ${ratio(r.toNoop)} | ${f0(r.rps)} | ${f1(r.p99)} | ${f0(r.loaderCpuPct)} | ${r.unexpected} |`)
  }
  return lines.join('\n')
}
