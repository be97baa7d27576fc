/**
 * PGlite does not lock its data directory: two processes can open the same directory at once, each
 * sees only its own writes, and the last one to close overwrites the other's (verified with
 * @electric-sql/pglite 0.5). So createDatabase takes a lock file, `<dataDir>/LOCK`, holding the pid:
 * while another live process holds it, opening fails with EmbeddedDatabaseBusyError. A lock left by a
 * dead process (crash, kill -9) is taken over.
 */
import * as fs from 'node:fs'
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

/** Takes `<dataDir>/LOCK` (pid inside) or throws EmbeddedDatabaseBusyError; returns the release function. */
export function acquireLock (dataDir: string): () => void {
  fs.mkdirSync(dataDir, { recursive: true })
  const lockPath = path.join(dataDir, 'LOCK')
  const content = `${process.pid}\n`
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(lockPath, content, { flag: 'wx' })
      break
    } catch (err) {
      /* c8 ignore next -- EACCES, EROFS...: the file system, not another process */
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const pid = readPid(lockPath)
    // Held by a live process (this one included: two PGlite instances on one directory lose data).
    if (pid !== undefined && pidIsAlive(pid)) throw new EmbeddedDatabaseBusyError(dataDir, pid)
    /* c8 ignore next -- a race: another process took over the same stale lock first */
    if (attempt > 0) throw new EmbeddedDatabaseBusyError(dataDir, pid)
    // Stale: left by a dead process (crash, kill -9), or unreadable. Take it over.
    fs.rmSync(lockPath, { force: true })
  }
  // Called once: by close() (memoized) or at process exit, whichever comes first.
  const release = (): void => {
    process.removeListener('exit', release)
    // Only our own lock (never one another process took over meanwhile).
    if (readPid(lockPath) === process.pid) fs.rmSync(lockPath, { force: true })
  }
  process.once('exit', release)
  return release
}
