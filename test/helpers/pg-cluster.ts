/**
 * Throwaway PostgreSQL servers for tests (and for test/run.ts): a primary, and optionally a streaming
 * hot-standby replica, each in a temp directory of its own, on free ports of 127.0.0.1, trust auth.
 *
 *   const cluster = await startCluster({ replica: true })
 *   t.teardown(() => cluster.stop())
 *
 * Needs the PostgreSQL server binaries: $PG_BIN, else the newest /usr/lib/postgresql/<v>/bin, else
 * PATH. They refuse to run as root, so as root every command runs as the OS user `postgres`.
 * Servers left running when the process exits (normally, or on SIGINT/SIGTERM/SIGHUP) are killed.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import postgres from 'postgres'

export interface ClusterOptions {
  /** Also start a streaming replica (hot standby) of the primary. */
  replica?: boolean
  /** Servers log to this process's stderr (default: to log files in the temp dir, quoted in errors). */
  log?: boolean
  /** Longest wait for a server to start or the replica to stream, in ms (default 60 000). */
  timeoutMs?: number
  /** pg_hba.conf lines put before the trust ones, e.g. 'host all app 127.0.0.1/32 scram-sha-256'. */
  hba?: string[]
}

export interface Cluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres (a superuser). */
  url: string
  port: number
  /** The primary's data directory. */
  dataDir: string
  /** The temp directory holding every data directory and log of this cluster. */
  dir: string
  replicaUrl?: string
  replicaPort?: number
  replicaDataDir?: string
  /** Stops every server (immediate shutdown) and removes `dir`. Idempotent. */
  stop: () => Promise<void>
  /** Stops the replica (fast shutdown), keeping its data; the primary then shows no replica. */
  stopReplica: () => Promise<void>
  /** Starts the stopped replica again, on the same port, and waits until it streams. */
  startReplica: () => Promise<void>
  /** Stops applying WAL on the replica (it still receives it): simulated replication lag. */
  pauseReplay: () => Promise<void>
  resumeReplay: () => Promise<void>
  /** Bytes of WAL written on the primary and not yet replayed on the replica. */
  replicationLagBytes: () => Promise<number>
  /** Stops the primary (fast shutdown), keeping its data; a replica keeps serving reads. */
  stopPrimary: () => Promise<void>
  /** Starts the stopped primary again, on the same port (and, with a replica, waits until it streams). */
  startPrimary: () => Promise<void>
}

export class PgClusterError extends Error {
  override name = 'PgClusterError'
  /** 'ENOPGBIN' when the PostgreSQL binaries are not installed. */
  code: string | undefined

  constructor (message: string, code?: string) {
    super(message)
    this.code = code
  }
}

const IS_ROOT = process.getuid?.() === 0

function pgBinDir (): string {
  if (process.env.PG_BIN) return process.env.PG_BIN
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb'))) : []
  versions.sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? path.join(root, versions[0], 'bin') : ''
}

function tail (text: string, lines = 12): string {
  return text.trim().split('\n').slice(-lines).join('\n')
}

/**
 * Runs a PostgreSQL program (as `postgres` when root). Rejects with one PgClusterError naming the
 * command and quoting the end of its stderr, and of `logFile` when given (pg_ctl's own stderr only
 * says "examine the log output").
 */
function pg (program: string, args: string[], opts: { cwd: string, logFile?: string, inheritOutput?: boolean }): Promise<string> {
  const bin = pgBinDir()
  const file = bin === '' ? program : path.join(bin, program)
  const notFound = `PostgreSQL binaries not found (install PostgreSQL, or set PG_BIN to their directory; looked in ${bin === '' ? 'PATH' : bin})`
  if (bin !== '' && !existsSync(file)) return Promise.reject(new PgClusterError(`pg-cluster: ${notFound}`, 'ENOPGBIN'))
  const [cmd, argv] = IS_ROOT ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args]
  return new Promise((resolve, reject) => {
    // With inheritOutput the postmaster writes to our stderr (fd 2) for as long as it runs.
    const child = spawn(cmd, argv, { cwd: opts.cwd, stdio: ['ignore', opts.inheritOutput ? 2 : 'pipe', opts.inheritOutput ? 2 : 'pipe'] })
    let out = ''
    child.stdout?.on('data', (d) => { out += d })
    child.stderr?.on('data', (d) => { out += d })
    child.on('error', (err) => {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT' && !IS_ROOT
      reject(new PgClusterError(`pg-cluster: cannot run ${file}: ${missing ? notFound : err.message}`, missing ? 'ENOPGBIN' : undefined))
    })
    child.on('close', (code) => {
      if (code === 0) return resolve(out)
      let msg = `pg-cluster: \`${program} ${args.join(' ')}\` failed (exit ${code})`
      if (tail(out) !== '') msg += `:\n${tail(out)}`
      if (opts.logFile !== undefined && existsSync(opts.logFile)) msg += `\n--- ${path.basename(opts.logFile)}:\n${tail(readFileSync(opts.logFile, 'utf8'))}`
      // runuser's own words when the program is not on PATH
      reject(new PgClusterError(msg, /runuser: failed to execute .*No such file/.test(out) ? 'ENOPGBIN' : undefined))
    })
  })
}

/** A port that was free a moment ago (bound to port 0, then closed). */
function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function postgresIds (): { uid: number, gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (line === undefined) throw new PgClusterError('pg-cluster: running as root needs an OS user `postgres` (none in /etc/passwd)')
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Calls `check` until it returns true (errors count as "not yet"), or fails after `timeoutMs`. */
async function waitFor (what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    await sleep(100)
  }
  const why = last instanceof Error ? ` (last error: ${last.message})` : ''
  throw new PgClusterError(`pg-cluster: timed out after ${timeoutMs} ms waiting for ${what}${why}`)
}

/** One query on a short-lived connection (no idle client keeps the process alive). */
async function query<T extends postgres.Row> (url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 })
  try {
    return [...await sql.unsafe<T[]>(text, params as never[])]
  } finally {
    await sql.end({ timeout: 1 })
  }
}

// Servers to kill if the process ends first: temp dir → its data dirs.
const live = new Map<string, string[]>()
let hooked = false

function pidIsAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

interface Postmaster { pid: number, pidFile: string }

/** SIGQUIT (immediate shutdown) to the running postmasters of `dataDirs`, which it returns. */
function quitPostmasters (dataDirs: string[]): Postmaster[] {
  const running: Postmaster[] = []
  for (const dir of dataDirs) {
    const pidFile = path.join(dir, 'postmaster.pid')
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : NaN
    if (Number.isInteger(pid) && pid > 0 && pidIsAlive(pid)) running.push({ pid, pidFile })
  }
  for (const { pid } of running) try { process.kill(pid, 'SIGQUIT') } catch {}
  return running
}

// Up while its pid file is there: an exited postmaster may stay a zombie if nothing reaps it.
const stillUp = (pms: Postmaster[]): Postmaster[] => pms.filter((p) => existsSync(p.pidFile) && pidIsAlive(p.pid))
const KILL_AFTER_MS = 5000

/** Kills the servers of `dataDirs`: SIGQUIT, then SIGKILL to any still up after 5 s. */
async function killServers (dataDirs: string[]): Promise<void> {
  const pms = quitPostmasters(dataDirs)
  const deadline = Date.now() + KILL_AFTER_MS
  while (stillUp(pms).length > 0 && Date.now() < deadline) await sleep(20)
  for (const { pid } of stillUp(pms)) try { process.kill(pid, 'SIGKILL') } catch {}
}

/** The same, blocking: for the 'exit' event, after which nothing asynchronous runs. */
function killServersSync (dataDirs: string[]): void {
  const pms = quitPostmasters(dataDirs)
  const deadline = Date.now() + KILL_AFTER_MS
  while (stillUp(pms).length > 0 && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
  for (const { pid } of stillUp(pms)) try { process.kill(pid, 'SIGKILL') } catch {}
}

// Retries: a server still shutting down may write a file while the tree is removed.
const removeDir = (dir: string): void => { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) }

function hookExit (): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => {
    for (const [dir, dataDirs] of live) {
      killServersSync(dataDirs)
      removeDir(dir)
    }
  })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      process.removeListener(sig, onSignal)
      // Without blocking the event loop: tsx SIGKILLs a child that has not acknowledged a signal within 30 ms.
      const all = [...live].map(async ([dir, dataDirs]) => { await killServers(dataDirs); removeDir(dir); live.delete(dir) })
      // Then re-raise: the default action (or the process's other listeners, e.g. tap's) ends the process.
      Promise.allSettled(all).then(() => process.kill(process.pid, sig), () => {})
    }
    process.on(sig, onSignal)
  }
}

/**
 * Kills the servers and removes the temp dirs of clusters whose process is gone without cleaning up
 * (SIGKILL, e.g. by a test runner's timeout): the dir name carries the owner's pid.
 */
async function sweepStale (): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(/^pg-cluster-(\d+)-/.exec(name)?.[1])
    if (!Number.isInteger(pid) || pid === process.pid || pidIsAlive(pid)) continue
    const dir = path.join(tmpdir(), name)
    try {
      await killServers(['primary', 'replica'].map((d) => path.join(dir, d)))
      removeDir(dir)
    } catch {} // best effort (e.g. another user's)
  }
}

interface Server { dataDir: string, logFile: string, port: number, url: string }

function conf (server: Server, settings: Record<string, string | number>): void {
  // Appended: for a setting given twice, the last line wins (the replica's copy of the primary's conf).
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}`)
  appendFileSync(server.dataDir + '/postgresql.conf', `\n# pg-cluster\n${lines.join('\n')}\n`)
}

export async function startCluster (options: ClusterOptions = {}): Promise<Cluster> {
  const timeoutMs = options.timeoutMs ?? 60_000
  hookExit()
  await sweepStale()
  const dir = mkdtempSync(path.join(tmpdir(), `pg-cluster-${process.pid}-`))
  const dataDirs: string[] = []
  live.set(dir, dataDirs)
  if (IS_ROOT) {
    const { uid, gid } = postgresIds()
    chownSync(dir, uid, gid)
  }
  const newServer = async (name: string): Promise<Server> => {
    const port = await freePort()
    const server = { dataDir: path.join(dir, name), logFile: path.join(dir, `${name}.log`), port, url: `postgres://postgres@127.0.0.1:${port}/postgres` }
    dataDirs.push(server.dataDir)
    return server
  }
  const run = (program: string, args: string[], logFile?: string): Promise<string> =>
    pg(program, args, { cwd: dir, logFile, inheritOutput: options.log === true && program === 'pg_ctl' && args.includes('start') })
  const startServer = (s: Server): Promise<string> =>
    run('pg_ctl', ['-D', s.dataDir, ...(options.log === true ? [] : ['-l', s.logFile]), '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'start'], s.logFile)
  const stopServer = async (s: Server, mode: 'fast' | 'immediate'): Promise<void> => {
    if (!existsSync(path.join(s.dataDir, 'postmaster.pid'))) return
    await run('pg_ctl', ['-D', s.dataDir, '-m', mode, '-w', 'stop']).catch(() => killServers([s.dataDir]))
  }

  let stopping: Promise<void> | undefined
  const servers: Server[] = []
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(servers.map((s) => stopServer(s, 'immediate')))
      await killServers(dataDirs) // anything pg_ctl did not stop (or a server still starting)
      removeDir(dir)
      live.delete(dir)
    })()
    return stopping
  }

  try {
    const primary = await newServer('primary')
    servers.push(primary)
    await run('initdb', ['-D', primary.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C.UTF-8'])
    conf(primary, {
      port: primary.port,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dir,
      fsync: 'off',
      shared_buffers: '16MB',
      wal_level: 'replica',
      max_wal_senders: 4
    })
    writeFileSync(path.join(primary.dataDir, 'pg_hba.conf'), [
      ...(options.hba ?? []),
      'local all all trust',
      'host all all 127.0.0.1/32 trust',
      'host replication all 127.0.0.1/32 trust', ''
    ].join('\n'))
    await startServer(primary)

    const cluster: Cluster = {
      url: primary.url,
      port: primary.port,
      dataDir: primary.dataDir,
      dir,
      stop,
      stopReplica: noReplica,
      startReplica: noReplica,
      pauseReplay: noReplica,
      resumeReplay: noReplica,
      replicationLagBytes: noReplica,
      stopPrimary: async () => { await stopServer(primary, 'fast') },
      startPrimary: async () => { await startServer(primary) }
    }
    if (options.replica === true) {
      const replica = await newServer('replica')
      servers.push(replica)
      // -R writes standby.signal and primary_conninfo; the copied postgresql.conf is then overridden.
      await run('pg_basebackup', ['-R', '-D', replica.dataDir, '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-X', 'stream'])
      conf(replica, { port: replica.port, hot_standby: 'on', cluster_name: 'replica' })
      // With cluster_name set, the replica's walreceiver shows as application_name 'replica'.
      const streaming = async (): Promise<boolean> =>
        (await query(primary.url, "select 1 from pg_stat_replication where application_name = 'replica' and state = 'streaming'")).length > 0
      const startReplica = async (): Promise<void> => {
        await startServer(replica)
        await waitFor('the replica to stream from the primary (pg_stat_replication)', timeoutMs, streaming)
      }
      await startReplica()
      Object.assign(cluster, {
        replicaUrl: replica.url,
        replicaPort: replica.port,
        replicaDataDir: replica.dataDir,
        startReplica,
        startPrimary: async () => {
          await startServer(primary)
          await waitFor('the replica to stream from the restarted primary', timeoutMs, streaming)
        },
        stopReplica: async () => {
          await stopServer(replica, 'fast')
          await waitFor('the primary to see the replica gone', timeoutMs, async () => !await streaming())
        },
        pauseReplay: async () => {
          await query(replica.url, 'select pg_wal_replay_pause()')
          await waitFor('replay to pause', timeoutMs, async () =>
            (await query(replica.url, 'select pg_get_wal_replay_pause_state() as s'))[0].s === 'paused')
        },
        resumeReplay: async () => { await query(replica.url, 'select pg_wal_replay_resume()') },
        replicationLagBytes: async () => {
          // Replica first: the primary's position read afterwards can only be further on.
          const [{ lsn }] = await query<{ lsn: string }>(replica.url, 'select pg_last_wal_replay_lsn()::text as lsn')
          const [{ lag }] = await query<{ lag: number }>(primary.url, 'select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 as lag', [lsn])
          return Math.max(0, lag)
        }
      } satisfies Partial<Cluster>)
    }
    return cluster
  } catch (err) {
    await stop()
    throw err
  }
}

async function noReplica (): Promise<never> {
  throw new PgClusterError('pg-cluster: this cluster has no replica (startCluster({ replica: true }))')
}
