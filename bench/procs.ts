/**
 * The bench's child processes, shared by run.ts and profile.ts: scenario servers (bench/server.ts) on
 * core 0 and the load generator (bench/loader.ts) on core 1, pinned with `taskset`, both spoken to
 * over IPC only (never HTTP), so nothing the bench says to them is counted as a request.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { LoadOptions, LoadSummary } from './loader.js'
import type { Scenario, ServerConfig } from './scenarios.js'

const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url))
const LOADER = fileURLToPath(new URL('./loader.ts', import.meta.url))

/** Servers on core 0, the loader on core 1; false (--no-pin, or one core): wherever the OS likes. */
export const canPin = (): boolean => cpus().length >= 2
export const SERVER_CORE = 0
export const LOADER_CORE = 1

export function spawnNode (pin: boolean, core: number, script: string, argv: string[], env: NodeJS.ProcessEnv, nodeFlags: string[] = []): ChildProcess {
  const nodeArgs = [...nodeFlags, '--import', 'tsx', script, ...argv]
  const [cmd, cmdArgs] = pin ? ['taskset', ['-c', String(core), process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs]
  return spawn(cmd, cmdArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env })
}

export function nextMessage<T> (child: ChildProcess, type: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timeout waiting for ${type}`)) }, timeoutMs)
    const onMessage = (msg: { type: string }): void => { if (msg.type === type) { cleanup(); resolve(msg as T) } }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`child exited (${code}) before ${type}`)) }
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

export interface Loader { load: (options: LoadOptions) => Promise<LoadSummary>, close: () => void }

export async function startLoader (pin: boolean): Promise<Loader> {
  const child = spawnNode(pin, LOADER_CORE, LOADER, [], process.env)
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

export interface ServerStats {
  cpuUs: number
  wallMs: number
  /** The window on the monotonic clock, in µs (V8's CPU profile timestamps use the same clock). */
  t0Us: number
  t1Us: number
  eld: { p50: number, p99: number, max: number, mean: number }
  rssMb: number
}
export interface Server {
  url: string
  pid: number
  /** Resets the server's meters: the measured window begins. */
  start: () => Promise<void>
  /** Ends the window: the server's CPU time, requests and event-loop delay over it. */
  stop: () => Promise<ServerStats>
  /** Stops the process (SIGSTOP) while another server is measured: an idle Node process still runs
   * timers and GC on the shared core, and that made identical servers differ by 25%. */
  pause: () => void
  /** Lets it run again (SIGCONT). */
  resume: () => void
  close: () => Promise<void>
}

export interface ServerSpawn { pin: boolean, lib?: string, nodeFlags?: string[] }

export async function startServer (scenario: Scenario, config: ServerConfig, { pin, lib, nodeFlags = [] }: ServerSpawn): Promise<Server> {
  const env = { ...process.env, BENCH_CONFIG: JSON.stringify(config), ...(lib === undefined ? {} : { BENCH_LIB: lib }) }
  const child = spawnNode(pin, SERVER_CORE, SERVER, [scenario], env, nodeFlags)
  const { port, pid } = await nextMessage<{ port: number, pid: number }>(child, 'ready')
  return {
    url: `http://127.0.0.1:${port}`,
    pid,
    async start () { child.send({ type: 'start' }); await nextMessage(child, 'started') },
    async stop () { child.send({ type: 'stop' }); return await nextMessage<ServerStats>(child, 'stopped') },
    pause () { if (child.exitCode === null) process.kill(pid, 'SIGSTOP') },
    resume () { if (child.exitCode === null) process.kill(pid, 'SIGCONT') },
    async close () {
      if (child.exitCode !== null) return
      process.kill(pid, 'SIGCONT')
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.send({ type: 'close' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}
