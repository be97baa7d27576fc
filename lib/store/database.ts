/**
 * createDatabase: a Drizzle database on PostgreSQL (postgres.js) when a URL is given, else on an
 * embedded PGlite (persisted under ./.data/, or in memory), with LISTEN/NOTIFY and close().
 * (The embedded database's lock is in embedded-lock.ts, the migrations in migrate.ts.)
 */
import * as path from 'node:path'
import { sql as rawSql } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { PGlite } from '@electric-sql/pglite'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import { arrayOf, bool, integer, ms, object, optional, optionError, orFalse, satisfies, string } from '../validate.js'
import { acquireLock } from './embedded-lock.js'
import { validateChannel } from './notify.js'
import { ReplicaSet } from './replicas.js'
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
  /** postgres.js only: ms after which an idle pool connection is closed (it reopens when needed);
   * default 0, never. A process that is mostly idle then holds only its LISTEN connection. */
  idleTimeout?: number
  /** PGlite only: use this existing instance (e.g. a `clone()`); `close()` closes it. No lock is taken. */
  pglite?: PGlite
  /** postgres.js only: URLs of read replicas (hot standbys of `url`) the token lookups are read from;
   * writes, LISTEN and NOTIFY stay on `url`. Each gets a pool of `max` connections. */
  replicas?: string[]
  /** With `replicas`: a replica further behind the primary than this many ms is not read from
   * (default 1,000); `false` does not check the lag. */
  replicaMaxLag?: number | false
  /** With `replicas`: ms a replica that failed is left alone before it is tried again (default 5,000). */
  replicaRetry?: number
  /** With `replicas`: ms a lookup on a replica may take before the primary is asked (default 1,000). */
  replicaTimeout?: number
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
  /** With the `replicas` option: where the token lookups are read (see replicas.ts). */
  replicas?: ReplicaSet
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
/**
 * Opens the store's database: postgres.js on `url` when given, else PGlite (on disk under
 * `opts.dataDir`, default ./.data, or in memory with `opts.memory`).
 * @throws EmbeddedDatabaseBusyError when the PGlite directory is held by another process.
 */
export async function createDatabase (url?: string, options: CreateDatabaseOptions = {}): Promise<Database> {
  const opts = databaseOptions(options, 'createDatabase')
  if (url !== undefined && url !== '') return createPostgres(url, opts)
  if (opts.replicas.length > 0) throw optionError('replicas', 'option replicas needs a PostgreSQL url: the embedded database (PGlite) has no replicas')
  return await createPglite(opts)
}

// Checked without quoting the value: a URL may hold a password.
const replicaUrl = (value: unknown, path: string): string => {
  if (typeof value !== 'string' || !/^postgres(ql)?:\/\/./.test(value)) throw optionError(path, `option ${path} must be a postgres:// URL`)
  return value
}

export const databaseOptions = object({
  dataDir: optional(string({ expected: 'a directory path' })),
  memory: bool(false),
  max: integer({ min: 1, max: 1000, default: 10 }),
  connectTimeout: integer({ min: 1, max: 3600, default: DEFAULT_CONNECT_TIMEOUT, unit: 'seconds' }),
  idleTimeout: ms(0, 0),
  pglite: optional(satisfies<PGlite>((v) => typeof (v as PGlite | null)?.query === 'function', 'a PGlite instance')),
  replicas: arrayOf(replicaUrl, { max: 16, expected: 'an array of at most 16 postgres:// URLs', default: [] }),
  replicaMaxLag: orFalse(ms(1_000)),
  replicaRetry: ms(5_000),
  replicaTimeout: ms(1_000)
})
type ResolvedDatabaseOptions = ReturnType<typeof databaseOptions>

function postgresClient (url: string, opts: ResolvedDatabaseOptions): postgres.Sql {
  return postgres(url, {
    max: opts.max,
    connect_timeout: opts.connectTimeout,
    idle_timeout: opts.idleTimeout === 0 ? undefined : opts.idleTimeout / 1000,
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
}

function createPostgres (url: string, opts: ResolvedDatabaseOptions): Database {
  const client = postgresClient(url, opts)
  guardTransactions(client)
  const db = drizzlePostgres(client, { schema })
  // Replicas are only read from (no transactions): their pools need no guard.
  const replicaClients = opts.replicas.map((u) => postgresClient(u, opts))
  const replicas = replicaClients.length === 0
    ? undefined
    : new ReplicaSet(
      { db, query: async (text) => [...await client.unsafe(text)] },
      replicaClients.map((c) => ({ db: drizzlePostgres(c, { schema }), query: async (text) => [...await c.unsafe(text)] })),
      { maxLag: opts.replicaMaxLag, retry: opts.replicaRetry, timeout: opts.replicaTimeout })
  let closed: Promise<void> | undefined
  return {
    db,
    kind: 'postgres',
    sql: client,
    url,
    replicas,
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
      closed ??= (async () => {
        replicas?.close()
        await Promise.all([client, ...replicaClients].map((c) => c.end({ timeout: 5 })))
      })()
      return closed
    }
  }
}

async function createPglite (opts: ResolvedDatabaseOptions): Promise<Database> {
  let dataDir: string | undefined
  let releaseLock = (): void => {}
  if (opts.pglite === undefined && !opts.memory) {
    dataDir = path.resolve(opts.dataDir ?? DEFAULT_DATA_DIR)
    releaseLock = await acquireLock(dataDir)
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

/** For callers holding only a drizzle database: `select 1`, throws when the database cannot answer. */
export async function ping (db: TokenAuthDatabase): Promise<void> {
  await db.execute(rawSql`select 1`)
}
