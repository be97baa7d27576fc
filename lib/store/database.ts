/**
 * createDatabase: a Drizzle database on PostgreSQL (postgres.js) when a URL is given, else on an
 * embedded PGlite (persisted under ./.data/, or in memory), with LISTEN/NOTIFY and close().
 * migrate: applies the SQL in drizzle/ with the matching Drizzle migrator.
 *
 * PGlite does not lock its data directory: two processes can open the same directory at once, each
 * sees only its own writes, and the last one to close overwrites the other's (verified with
 * @electric-sql/pglite 0.5). So createDatabase takes a lock file, `<dataDir>/LOCK`, holding the pid:
 * while another live process holds it, opening fails with EmbeddedDatabaseBusyError. A lock left by a
 * dead process (crash, kill -9) is taken over.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql as rawSql } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { PGlite } from '@electric-sql/pglite'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import * as schema from './schema.js'

/** A Drizzle database on either driver; every query of the store type-checks against this. */
export type TokenAuthDatabase = PgDatabase<PgQueryResultHKT, typeof schema>

/**
 * Subscribe to a NOTIFY channel; resolves to a function that unsubscribes. `onReconnect` is called
 * each time the subscription is made again after its connection was lost: notifications sent in
 * between are gone, so whoever relies on them must assume they missed some.
 */
export type ListenFn = (channel: string, onMessage: (payload: string) => void, onReconnect?: () => void) => Promise<() => Promise<void>>

export interface CreateDatabaseOptions {
  /** PGlite only: the data directory (default `./.data`, relative to the working directory). */
  dataDir?: string
  /** PGlite only: keep the database in memory (nothing written to disk, no lock). */
  memory?: boolean
  /** postgres.js only: the pool size (default 10). LISTEN uses one more, dedicated connection. */
  max?: number
  /** postgres.js only: seconds to wait for a new connection before failing the queries queued on it
   * (default 10; postgres.js's own default is 30). During a network partition every query that opens
   * a connection waits this long before it fails (503), and holds a pool slot meanwhile. */
  connectTimeout?: number
  /** PGlite only: use this existing instance (e.g. a `clone()`); `close()` closes it. No lock is taken. */
  pglite?: PGlite
}

export interface Database {
  db: TokenAuthDatabase
  kind: 'postgres' | 'pglite'
  /** LISTEN on `channel` (on its own connection for postgres.js); resolves to an unlisten function. */
  listen: ListenFn
  /** Closes the pool or the embedded database (and releases its lock). Idempotent. */
  close: () => Promise<void>
  /** The postgres.js client (kind 'postgres'). */
  sql?: postgres.Sql
  /** The connection URL (kind 'postgres'). */
  url?: string
  /** The PGlite instance (kind 'pglite'). */
  pglite?: PGlite
  /** PGlite on disk: the absolute data directory. */
  dataDir?: string
}

/** Thrown when the embedded database's directory is held by another live process. */
export class EmbeddedDatabaseBusyError extends Error {
  readonly dataDir: string
  readonly pid: number | undefined
  constructor (dataDir: string, pid: number | undefined) {
    super(
      `the embedded database at ${dataDir} is busy: it is open in another process` +
      (pid === undefined ? '' : ` (pid ${pid})`) +
      '. PGlite allows a single process at a time: stop that process (for example the server started by `npm start`), ' +
      'or set DATABASE_URL to use a PostgreSQL server'
    )
    this.name = 'EmbeddedDatabaseBusyError'
    this.dataDir = dataDir
    this.pid = pid
  }
}

export const DEFAULT_DATA_DIR = '.data'
// Errors with which postgres.js fails the queries of a connection whose socket has closed.
const CONNECTION_LOST = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'ECONNRESET', 'EPIPE'])

/** The error (or the error Drizzle wrapped in a DrizzleQueryError's `cause`) says the socket is gone. */
function connectionLost (err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 3; e = (e as { cause?: unknown }).cause, depth++) {
    if (CONNECTION_LOST.has((e as { code?: unknown }).code as string)) return true
  }
  return false
}

/**
 * postgres.js (3.4.9) answers a transaction callback's failure with a ROLLBACK on the same connection;
 * when the failure was the connection closing, that write runs in a setImmediate on a null socket and
 * throws a TypeError no one can catch: the process dies (upstream porsager/postgres PR #1209). Its
 * `begin` already rejects the caller as soon as the connection closes (it races the callback with the
 * connection's onclose), so when the callback failed because the connection is gone, the callback's
 * promise is left pending instead: no ROLLBACK is attempted (the server rolls back a transaction whose
 * session ended), and the caller still gets the connection error.
 */
function guardTransactions (client: postgres.Sql): void {
  const begin = client.begin.bind(client) as (options: string, fn: (sql: unknown) => unknown) => Promise<unknown>
  const guarded = (options: unknown, fn?: (sql: unknown) => unknown): Promise<unknown> => {
    if (fn === undefined) return guarded('', options as (sql: unknown) => unknown)
    return begin(options as string, async (sql) => {
      try {
        return await fn(sql)
      } catch (err) {
        if (connectionLost(err)) return await new Promise<never>(() => {})
        throw err
      }
    })
  }
  client.begin = guarded as unknown as postgres.Sql['begin']
}

/** Seconds between reconnect attempts after `retries` failures: 50 ms doubling, at most 1 s, jittered. */
function reconnectBackoff (retries: number): number {
  return Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2)
}

/** Seconds createDatabase's postgres.js pool waits for a connection (postgres.js defaults to 30). */
export const DEFAULT_CONNECT_TIMEOUT = 10
/** Where the generated SQL lives: <package>/drizzle, from lib/store (tsx) and dist/store alike. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle/', import.meta.url))
/** The migrations journal, kept apart from a host app's own Drizzle journal (see drizzle.config.ts). */
export const MIGRATIONS_SCHEMA = 'drizzle'
export const MIGRATIONS_TABLE = '__token_auth_migrations'
// pg_advisory_lock key serializing concurrent migrate() calls of several processes ('tokauth!').
const MIGRATE_LOCK_KEY = 0x746f6b61757468n

const CHANNEL_RE = /^[a-z_][a-z0-9_]{0,62}$/

/** Throws a clear error unless `channel` is a lowercase SQL identifier (so LISTEN and pg_notify agree). */
export function validateChannel (channel: string): string {
  if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
    throw new TypeError(`fastify-token-auth: invalid notify channel ${JSON.stringify(channel)}: use lowercase letters, digits and _ (at most 63)`)
  }
  return channel
}

/**
 * Opens the store's database: postgres.js on `url` when given, else PGlite (on disk under
 * `opts.dataDir`, default ./.data, or in memory with `opts.memory`).
 * @throws EmbeddedDatabaseBusyError when the PGlite directory is held by another process.
 */
export async function createDatabase (url?: string, opts: CreateDatabaseOptions = {}): Promise<Database> {
  if (url !== undefined && url !== '') return createPostgres(url, opts)
  return createPglite(opts)
}

function createPostgres (url: string, opts: CreateDatabaseOptions): Database {
  const connectTimeout = opts.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
  if (!(typeof connectTimeout === 'number' && connectTimeout > 0)) throw new TypeError('fastify-token-auth: connectTimeout must be a positive number of seconds')
  const client = postgres(url, {
    max: opts.max ?? 10,
    connect_timeout: connectTimeout,
    // postgres.js (3.4.9) runs its array-type lookup on every new connection from an async function
    // nobody awaits: when the connection drops during it (an outage, a restart), the rejection is
    // unhandled (a crash under Node's default) and the query waiting for that connection hangs
    // through endless reconnects. The store's only array column (scopes, text[]) is parsed by Drizzle.
    fetch_types: false,
    // postgres.js waits up to 20 s between reconnects after repeated failures (backoff 3^n / 100 s);
    // capped at 1 s, service is back about a second after the database is.
    backoff: reconnectBackoff,
    onnotice: () => {}
  })
  guardTransactions(client)
  const db = drizzlePostgres(client, { schema })
  let closed: Promise<void> | undefined
  return {
    db,
    kind: 'postgres',
    sql: client,
    url,
    async listen (channel, onMessage, onReconnect) {
      validateChannel(channel)
      let subscribed = false
      // postgres.js calls the third argument on every LISTEN, the first one included.
      const sub = await client.listen(channel, (payload) => onMessage(payload), () => {
        if (subscribed) onReconnect?.()
        subscribed = true
      })
      return async () => { await sub.unlisten() }
    },
    close () {
      closed ??= client.end({ timeout: 5 })
      return closed
    }
  }
}

async function createPglite (opts: CreateDatabaseOptions): Promise<Database> {
  let dataDir: string | undefined
  let releaseLock = (): void => {}
  if (opts.pglite === undefined && opts.memory !== true) {
    dataDir = path.resolve(opts.dataDir ?? DEFAULT_DATA_DIR)
    releaseLock = acquireLock(dataDir)
  }
  let pg: PGlite
  try {
    pg = opts.pglite ?? await PGlite.create(dataDir === undefined ? {} : { dataDir })
  } catch (err) {
    releaseLock()
    throw err
  }
  const db = drizzlePglite(pg, { schema })
  let closed: Promise<void> | undefined
  return {
    db,
    kind: 'pglite',
    pglite: pg,
    dataDir,
    async listen (channel, onMessage) {
      validateChannel(channel)
      const unlisten = await pg.listen(channel, onMessage)
      return async () => { if (!pg.closed) await unlisten() }
    },
    close () {
      closed ??= (async () => {
        try {
          if (!pg.closed) await pg.close()
        } finally {
          releaseLock()
        }
      })()
      return closed
    }
  }
}

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
function acquireLock (dataDir: string): () => void {
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

/**
 * Applies the migrations in drizzle/ (idempotent: applied ones are recorded in
 * drizzle.__token_auth_migrations). On PostgreSQL, concurrent calls from several processes are
 * serialized with an advisory lock.
 */
export async function migrate (database: Pick<Database, 'db' | 'kind' | 'url'>): Promise<void> {
  const config = { migrationsFolder: MIGRATIONS_FOLDER, migrationsSchema: MIGRATIONS_SCHEMA, migrationsTable: MIGRATIONS_TABLE }
  if (database.kind === 'pglite') {
    await migratePglite(database.db as never, config)
    return
  }
  if (database.url === undefined) {
    // A caller-built drizzle db without its URL: no advisory lock.
    await migratePostgres(database.db as never, config)
    return
  }
  // One dedicated connection: the session-level advisory lock and the migrator's transaction share it.
  const client = postgres(database.url, { max: 1, onnotice: () => {} })
  try {
    await client`select pg_advisory_lock(${MIGRATE_LOCK_KEY.toString()}::bigint)`
    await migratePostgres(drizzlePostgres(client), config)
  } finally {
    // Ending the session releases the advisory lock.
    await client.end({ timeout: 5 })
  }
}

/** For callers holding only a drizzle database: `select 1`, throws when the database cannot answer. */
export async function ping (db: TokenAuthDatabase): Promise<void> {
  await db.execute(rawSql`select 1`)
}
