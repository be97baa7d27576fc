/**
 * Writes the README's performance table from a bench run's results, so the README shows what a run
 * measured rather than figures copied by hand:
 *
 *   npx tsx bench/readme-table.ts [bench/results/<run>.json]     (default: the latest run)
 *
 * It replaces what lies between `<!-- bench-table -->` and `<!-- /bench-table -->` in README.md: a
 * sentence naming the run, then one row per scenario below. Run it after `npm run bench` (the run
 * must have measured all of them) and commit the README with the run's figures in the message.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { f0, f1, f2, type Row } from './report.js'
import type { Scenario } from './scenarios.js'

const README = fileURLToPath(new URL('../README.md', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
const START = '<!-- bench-table -->'
const END = '<!-- /bench-table -->'

/** The README's rows: its own words for each scenario. */
const ROWS: Array<[Scenario, string]> = [
  ['bare', 'bare Fastify'],
  ['noop', 'a provider that answers at once (the plugin\'s whole path)'],
  ['bearer-auth', '@fastify/bearer-auth, 1 static key'],
  ['secret', '`SecretTokenAuthProvider`, 10 tokens'],
  ['db-warm', 'database provider, cache warm'],
  ['db-cold', 'database provider, cache off (every request a query)'],
  ['naive', 'a naive Drizzle query per request']
]

interface Results {
  started: string
  options: { processes: number, rounds: number, duration: number }
  rows: Row[]
}

export function readmeTable (results: Results): string {
  const { started, options, rows } = results
  const when = started.slice(0, 16).replace('T', ', ') // UTC
  const lines = [
    `Server CPU time per request, one \`npm run bench\` on this project's 2-core machine (${when} UTC;`,
    `long-lived servers pinned to their own core, ${options.processes} processes per scenario, only the one measured`,
    `running, ${options.rounds} rotated rounds of ${options.duration} s; median ratio to bare Fastify in the same round):`,
    '',
    '| scenario | µs/req | ratio to bare | req/s |',
    '| --- | ---: | ---: | ---: |'
  ]
  for (const [scenario, label] of ROWS) {
    const row = rows.find((r) => r.scenario === scenario)
    if (row === undefined) throw new Error(`the run did not measure ${scenario}: run npm run bench without --only`)
    lines.push(`| ${label} | ${f1(row.cpuUsPerReq)} | ${f2(row.toBare.median)} | ${f0(row.rps)} |`)
  }
  return lines.join('\n')
}

/** `readme` with the block between the markers replaced by `table`. */
export function replaceTable (readme: string, table: string): string {
  const a = readme.indexOf(START)
  const b = readme.indexOf(END)
  if (a < 0 || b < a) throw new Error(`README.md has no ${START} ... ${END} block`)
  return `${readme.slice(0, a + START.length)}\n${table}\n${readme.slice(b)}`
}

function latest (): string {
  // npm run bench's own results only (named by their start, <ISO time>.json): bench/results/ holds
  // bench:capacity's capacity-*.json and bench:login's login-*.json too, which sort after them.
  const runs = readdirSync(RESULTS).filter((f) => /^\d{4}-\d{2}-\d{2}T[\d-]+Z\.json$/.test(f)).sort()
  if (runs.length === 0) throw new Error('no bench results: run npm run bench first')
  return `${RESULTS}${runs[runs.length - 1]}`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? latest()
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results
  writeFileSync(README, replaceTable(readFileSync(README, 'utf8'), readmeTable(results)))
  console.log(`README.md: the performance table of ${file}`)
}
