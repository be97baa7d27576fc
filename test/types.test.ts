// Runs the type tests (tstyche, test/types/**/*.tst.ts, see tstyche.config.json) so that they count in
// `npm test`: a type regression fails the suite like any other test.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

t.test('tstyche passes', async (t) => {
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve, reject) => {
    const child = spawn('npx', ['--no-install', 'tstyche'], { cwd: root, env: { ...process.env, NO_COLOR: '1' } })
    let output = ''
    child.stdout.on('data', (c) => { output += c })
    child.stderr.on('data', (c) => { output += c })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
  t.equal(code, 0, 'tstyche exits with 0', { output })
  t.match(output, /Test files:\s+2 passed, 2 total/, 'both type test files ran')
  t.notMatch(output, /failed/)
})
