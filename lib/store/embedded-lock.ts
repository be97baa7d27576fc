/**
 * The embedded database's directory: kept private, and held by one process at a time.
 *
 * PGlite does not lock its data directory: two processes can open the same directory at once, each
 * sees only its own writes, and the last one to close overwrites the other's (verified with
 * @electric-sql/pglite 0.5). So createDatabase takes a lock:
 * - on Linux, by binding an abstract Unix socket named after the directory: the kernel gives it to
 *   one process only (atomic, even for two taking over at the same moment) and frees it when that
 *   process ends, however it ends (crash, kill -9), so there is no stale lock to take over;
 * - and, for the message (and other systems), `<dataDir>/LOCK` holding the pid: while another live
 *   process holds it, opening fails with EmbeddedDatabaseBusyError; a lock left by a dead process is
 *   taken over (on other systems than Linux, two processes doing that at the same moment can both
 *   succeed).
 *
 * The directory holds password hashes (and its WAL everything written): it is made 0700 and its files
 * unreadable by group and others, checked and repaired each time it is opened and closed (PGlite
 * creates its files with the process's umask; inside a 0700 directory no one else reaches them).
 */
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { EmbeddedDatabaseBusyError } from './errors.js'

/** True while a process with this pid exists (EPERM: it exists, under another user). */
export function pidIsAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readPid (lockPath: string): number | undefined {
  let text: string
  try {
    text = fs.readFileSync(lockPath, 'utf8')
  } catch {
    return undefined
  }
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/** Makes `dir` 0700 and removes group and other permissions from everything in it. */
export function securePermissions (dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const tighten = (p: string): void => {
    const st = fs.lstatSync(p)
    if (st.isSymbolicLink()) return
    if ((st.mode & 0o077) !== 0) fs.chmodSync(p, st.mode & 0o7700)
  }
  tighten(dir)
  for (const entry of fs.readdirSync(dir, { recursive: true }) as string[]) tighten(path.join(dir, entry))
}

/** Binds the directory's abstract socket (Linux), or resolves to undefined elsewhere; rejects with EADDRINUSE when held. */
async function bindSocket (dataDir: string): Promise<net.Server | undefined> {
  if (process.platform !== 'linux') return undefined
  const name = '\0fastify-token-auth:' + createHash('sha256').update(fs.realpathSync(dataDir)).digest('hex').slice(0, 40)
  const server = net.createServer((socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ path: name, exclusive: true }, () => { server.off('error', reject); resolve() })
  })
  server.unref()
  return server
}

/**
 * Makes the directory private and takes its lock, or throws EmbeddedDatabaseBusyError; resolves to
 * the release function.
 */
export async function acquireLock (dataDir: string): Promise<() => void> {
  securePermissions(dataDir)
  const lockPath = path.join(dataDir, 'LOCK')
  let server: net.Server | undefined
  try {
    server = await bindSocket(dataDir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new EmbeddedDatabaseBusyError(dataDir, readPid(lockPath))
    /* c8 ignore next */
    throw err
  }
  try {
    takeLockFile(dataDir, lockPath)
  } catch (err) {
    server?.close()
    throw err
  }
  // Called once: by close() (memoized) or at process exit, whichever comes first.
  const release = (): void => {
    process.removeListener('exit', release)
    // Only our own lock file (never one another process took over meanwhile).
    if (readPid(lockPath) === process.pid) fs.rmSync(lockPath, { force: true })
    try { securePermissions(dataDir) } catch {}
    server?.close()
  }
  process.once('exit', release)
  return release
}

/** Writes `LOCK` with our pid, unless a live process (this one included) holds it. */
function takeLockFile (dataDir: string, lockPath: string): void {
  const content = `${process.pid}\n`
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(lockPath, content, { flag: 'wx', mode: 0o600 })
      return
    } catch (err) {
      /* c8 ignore next -- EACCES, EROFS...: the file system, not another process */
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const pid = readPid(lockPath)
    // Held by a live process (this one included: two PGlite instances on one directory lose data).
    if (pid !== undefined && pidIsAlive(pid)) throw new EmbeddedDatabaseBusyError(dataDir, pid)
    /* c8 ignore next -- a race: another process took over the same stale lock first (not on Linux: the socket comes first) */
    if (attempt > 0) throw new EmbeddedDatabaseBusyError(dataDir, pid)
    // Stale: left by a dead process (crash, kill -9), or unreadable. Take it over.
    fs.rmSync(lockPath, { force: true })
  }
}
