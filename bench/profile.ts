/**
 * Summarizes a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): self time by function and by
 * package/file, the top entries, so a missed target can be traced to what costs the time. Given the
 * profile's directory, only the samples inside the measured windows count (its windows.json, written
 * by run.ts): not the warm-ups, and not the spells the server was stopped, which the first sample
 * after a SIGCONT would otherwise carry as its own time. `--all` counts the whole lifetime.
 *
 *   npx tsx bench/profile.ts bench/results/profiles/<scenario>-<time>/ [--top 30]
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number, children?: number[] }
interface Profile { nodes: Node[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' }, all: { type: 'boolean', default: false } } })
const top = Number(values.top)
// A directory holds one profile per thread, CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile:
// take the main thread's (thread 0).
const files = positionals.map((p) => {
  if (!statSync(p).isDirectory()) return { file: p, windows: undefined }
  const all = readdirSync(p).filter((f) => f.endsWith('.cpuprofile'))
  const windows = values.all || !existsSync(join(p, 'windows.json'))
    ? undefined
    : JSON.parse(readFileSync(join(p, 'windows.json'), 'utf8')) as Array<[number, number]>
  return { file: join(p, all.find((f) => f.split('.')[4] === '0') ?? all[0]), windows }
})
for (const { file, windows } of files) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  // A sample's time is its delta, ending at its timestamp (startTime plus the deltas so far, in µs).
  const inWindow = (t: number): boolean => windows === undefined || windows.some(([t0, t1]) => t > t0 && t <= t1)
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    t += dt
    if (inWindow(t)) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt)
  }
  let total = 0
  const fn = new Map<string, number>()
  const where = new Map<string, number>()
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = (byId.get(id) as Node).callFrame
    total += us
    const short = url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '~/').replace(/.*\/work\/main\//, '')
    const name = `${functionName || '(anonymous)'} ${short === '' ? '' : `${short}:${lineNumber + 1}`}`
    fn.set(name, (fn.get(name) ?? 0) + us)
    const pkg = short === '' ? `(${functionName})` : short.startsWith('~/') ? short.split('/').slice(0, short.startsWith('~/@') ? 3 : 2).join('/') : short.startsWith('node:') ? 'node:' + short.slice(5).split('/')[0] : short
    where.set(pkg, (where.get(pkg) ?? 0) + us)
  }
  const show = (title: string, m: Map<string, number>): void => {
    console.log(`\n${title}`)
    for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${(100 * us / total).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`)
    }
  }
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled${windows === undefined ? ' (whole lifetime)' : ` in ${windows.length} measured windows`}`)
  show('self time by package / file', where)
  show('self time by function', fn)
}
