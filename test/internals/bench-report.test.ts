// bench/report.ts: the target lines npm run bench ends with.
import t from 'tap'
import { targetLine, targets, type Row } from '../../bench/report.js'

const row = (scenario: Row['scenario'], toBare: number, toNoop?: number): Row => ({
  scenario, rps: 1, p99: 1, cpuUsPerReq: 1, toBare: { median: toBare, min: toBare, max: toBare }, toNoop: toNoop === undefined ? undefined : { median: toNoop, min: toNoop, max: toNoop }, loaderCpuPct: 1, unexpected: 0, samples: []
})

t.test('a miss by less than 0.005 does not read as the target', async (t) => {
  const [secret] = targets([row('secret', 0.9, 0.9663)])
  t.equal(targetLine(secret), '- MISSED: secret / noop ≥ 0.97: 0.966 (short by 0.004)')
  const [met] = targets([row('secret', 0.9, 0.97)])
  t.equal(targetLine(met), '- met: secret / noop ≥ 0.97: 0.970')
})

t.test('a range missed from above says so', async (t) => {
  const lines = targets([row('bare2', 1.05)]).map(targetLine)
  t.same(lines, ['- MISSED: bare2 / bare within 0.97–1.03 (the run\'s own noise): 1.050 (over by 0.020)'])
})
