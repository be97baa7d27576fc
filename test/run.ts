/**
 * `npm test` (node --import tsx test/run.ts [tap arguments]): tap, on a real PostgreSQL whether or not DATABASE_URL is set.
 *
 * - DATABASE_URL set: tap on that server, nothing else.
 * - unset: tap on a throwaway server of its own (test/helpers/pg-cluster.ts), stopped when tap ends.
 *   If PostgreSQL is not installed or does not start: one line saying so, then tap without
 *   DATABASE_URL (PGlite; tests needing a real server skip), except with CI=true, where it fails.
 *
 * Arguments and stdio go to tap as they are; the exit code (or signal) is tap's.
 * Run by `node --import tsx`, not the tsx CLI, whose signal relay SIGKILLs a child slow to acknowledge
 * a signal (as on a busy machine): that would leave the throwaway server running.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startCluster, type Cluster } from './helpers/pg-cluster.js'

const TAP = fileURLToPath(new URL('../node_modules/.bin/tap', import.meta.url))
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

let child: ChildProcess | undefined
let interrupted: NodeJS.Signals | undefined
const forwarded = new Set<NodeJS.Signals>()
function onSignal (sig: NodeJS.Signals): void {
  interrupted ??= sig
  // Once per signal: pg-cluster re-raises the signal after killing its servers, which lands here again.
  if (!forwarded.has(sig)) child?.kill(sig)
  forwarded.add(sig)
}
for (const sig of SIGNALS) process.on(sig, onSignal)

/** Ends this process as tap did: same exit code, or the same signal. */
function exitLike (code: number | null, signal: NodeJS.Signals | null): never {
  if (signal !== null) {
    for (const sig of SIGNALS) process.removeListener(sig, onSignal)
    process.kill(process.pid, signal)
  }
  process.exit(code ?? 1)
}

function oneLine (err: unknown): string {
  const lines = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim()).filter((l) => l !== '')
  return lines.length > 1 ? `${lines[0]} ${lines.at(-1)}` : lines[0] ?? 'unknown error'
}

async function throwawayCluster (): Promise<Cluster | undefined> {
  try {
    const cluster = await startCluster()
    console.error(`test/run.ts: no DATABASE_URL, started a throwaway PostgreSQL at ${cluster.url} for this run`)
    return cluster
  } catch (err) {
    if (interrupted !== undefined) exitLike(null, interrupted)
    if (process.env.CI === 'true') {
      console.error(`test/run.ts: CI=true needs PostgreSQL (set DATABASE_URL, or install PostgreSQL): ${(err as Error).message}`)
      process.exit(1)
    }
    console.error(`test/run.ts: no DATABASE_URL and no throwaway PostgreSQL (${oneLine(err)}); running on PGlite, tests that need PostgreSQL will skip`)
    return undefined
  }
}

function runTap (env: NodeJS.ProcessEnv, cluster: Cluster | undefined): void {
  child = spawn(process.execPath, [TAP, ...process.argv.slice(2)], { stdio: 'inherit', env })
  child.on('error', async (err) => {
    console.error(`test/run.ts: cannot run tap: ${err.message}`)
    await cluster?.stop()
    process.exit(1)
  })
  child.on('exit', async (code, signal) => {
    await cluster?.stop()
    exitLike(code, signal)
  })
}

const env = { ...process.env }
let cluster: Cluster | undefined
if (env.DATABASE_URL === undefined || env.DATABASE_URL === '') {
  delete env.DATABASE_URL
  cluster = await throwawayCluster()
  if (cluster !== undefined) env.DATABASE_URL = cluster.url
}
if (interrupted !== undefined) {
  await cluster?.stop()
  exitLike(null, interrupted)
}
runTap(env, cluster)
