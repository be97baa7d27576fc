// Runs the type tests (tstyche, test/types/**/*.tst.ts, see tstyche.config.json) so that they count in
// `npm test`: a type regression fails the suite like any other test.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

// tstyche is not under test: it does not inherit tap's coverage and process-info hooks (NODE_OPTIONS,
// NODE_V8_COVERAGE, TAP*), so the TypeScript compiler is neither instrumented nor recorded as a test process.
const env: NodeJS.ProcessEnv = { NO_COLOR: '1' }
for (const [key, value] of Object.entries(process.env)) {
  if (key === 'NODE_OPTIONS' || key === 'NODE_V8_COVERAGE' || key.startsWith('TAP') || key.startsWith('_TAP')) continue
  env[key] = value
}

t.test('tstyche passes', async (t) => {
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve, reject) => {
    const child = spawn('npx', ['--no-install', 'tstyche'], { cwd: root, env })
    let output = ''
    child.stdout.on('data', (c) => { output += c })
    child.stderr.on('data', (c) => { output += c })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
  t.equal(code, 0, 'tstyche exits with 0', { output })
  t.match(output, /Test files:\s+3 passed, 3 total/, 'both type test files ran')
  t.notMatch(output, /failed/)
})
