/**
 * App processes for the many-processes test: each one runs test/helpers/app-process-server.ts on the
 * given database, named `name` in pg_stat_activity (application_name). Killed at the test's end
 * whatever happened; `stop()` is the clean SIGTERM shutdown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { childEnv } from './child-env.js'

const SERVER = fileURLToPath(new URL('./app-process-server.ts', import.meta.url))
const TSX = createRequire(import.meta.url).resolve('tsx')

export interface AppProcess {
  name: string
  url: string
  child: ChildProcess
  /** Sends SIGTERM; resolves to the exit code. */
  stop: () => Promise<number | null>
}

export async function startAppProcess (t: Test, opts: { name: string, databaseUrl: string, poolMax: number }): Promise<AppProcess> {
  const env = { ...childEnv(), DATABASE_URL: opts.databaseUrl, POOL_MAX: String(opts.poolMax), PGAPPNAME: opts.name }
  const child = spawn(process.execPath, ['--import', TSX, SERVER], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  let stdout = ''
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const port = await new Promise<number>((resolve, reject) => {
    // Startup on a busy machine (tsx compiling, four at once) can take a while.
    const timer = setTimeout(() => reject(new Error(`${opts.name}: not listening within 90 s: ${stderr}`)), 90_000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      const line = /^(\{.*\})\n/m.exec(stdout)?.[1]
      if (line !== undefined) {
        clearTimeout(timer)
        resolve((JSON.parse(line) as { port: number }).port)
      }
    })
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`${opts.name} exited (${code}) before listening: ${stderr}`))
    }, () => {})
  })
  return {
    name: opts.name,
    url: `http://127.0.0.1:${port}`,
    child,
    stop: async () => {
      child.kill('SIGTERM')
      return await exited
    }
  }
}
