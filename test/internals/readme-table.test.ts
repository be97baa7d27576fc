// bench/readme-table.ts writes the README's performance table from a bench run's results.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { readmeTable, replaceTable } from '../../bench/readme-table.js'
import type { Row } from '../../bench/report.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const scenarios = ['bare', 'bare2', 'noop', 'bearer-auth', 'secret', 'db-warm', 'db-cold', 'naive'] as const
const row = (scenario: Row['scenario'], us: number): Row => ({
  scenario, rps: 1e6 / us, p99: 2, cpuUsPerReq: us, toBare: { median: 10 / us, min: 0, max: 0 }, toNoop: undefined, loaderCpuPct: 80, unexpected: 0, samples: []
})
const results = {
  started: '2026-12-04T19:04:16.157Z',
  options: { processes: 3, rounds: 5, duration: 2 },
  rows: scenarios.map((s, i) => row(s, 10 + i))
}

t.test('the table names the run and has one row per README scenario, from the results', async (t) => {
  const table = readmeTable(results)
  t.match(table, /2026-12-04, 19:04 UTC/)
  t.match(table, /3 processes per scenario/)
  t.match(table, /5 rotated rounds of 2 s/)
  t.match(table, /\n\| bare Fastify \| 10\.0 \| 1\.00 \| 100,000 \|/)
  t.match(table, /\n\| database provider, cache warm \| 15\.0 \| 0\.67 \| 66,667 \|/)
  t.notMatch(table, /second identical/, 'the noise check is in docs/performance.md, not the README')
  t.equal(table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| scenario') && !l.startsWith('| ---')).length, 7)
})

t.test('a run without one of the scenarios is refused', async (t) => {
  t.throws(() => readmeTable({ ...results, rows: results.rows.filter((r) => r.scenario !== 'db-cold') }), /did not measure db-cold/)
})

t.test('the README has the block, and writing its own table back changes nothing else', async (t) => {
  t.equal(readme.split('<!-- bench-table -->').length, 2)
  t.equal(readme.split('<!-- /bench-table -->').length, 2)
  // What lies between the markers, without the newlines replaceTable puts around the table.
  const start = '<!-- bench-table -->\n'
  const inner = readme.slice(readme.indexOf(start) + start.length, readme.indexOf('\n<!-- /bench-table -->'))
  t.equal(replaceTable(readme, inner), readme)
  const replaced = replaceTable(readme, readmeTable(results))
  t.match(replaced, /\| bare Fastify \| 10\.0 \|/)
  t.equal(replaced.slice(0, readme.indexOf('<!-- bench-table -->')), readme.slice(0, readme.indexOf('<!-- bench-table -->')))
  t.equal(replaced.slice(replaced.indexOf('<!-- /bench-table -->')), readme.slice(readme.indexOf('<!-- /bench-table -->')))
  t.throws(() => replaceTable('# no block', 'x'), /no <!-- bench-table -->/)
})
