/**
 * A fresh, migrated database per test (file or subtest), removed at teardown.
 *
 * - DATABASE_URL set: CREATE DATABASE <random name> on that server, migrate, and at teardown close
 *   every client and DROP DATABASE ... WITH (FORCE). Names are unique, so test files run in parallel.
 * - DATABASE_URL unset: an in-memory PGlite (and a comment saying so).
 *
 *   const { database, service, url } = await freshDatabase(t)
 *
 * `requirePostgres(t)` is for tests that need the real server (several connections, NOTIFY across
 * connections, ...): without DATABASE_URL it skips the test, except with CI=true where it fails.
 */
import { randomBytes } from 'node:crypto'
import { PGlite } from '@electric-sql/pglite'
import postgres from 'postgres'
import tap, { type Test } from 'tap'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import type { Logger } from 'drizzle-orm/logger'
import { createDatabase, type Database, type TokenAuthDatabase } from '../../lib/store/database.js'
import { pidIsAlive } from '../../lib/store/embedded-lock.js'
import { migrate } from '../../lib/store/migrate.js'
import * as schema from '../../lib/store/schema.js'
import { TokenService, type TokenServiceOptions } from '../../lib/store/service.js'

/** scrypt parameters for tests that do not measure hashing: fast (N = 2^10). */
export const FAST_PASSWORD_PARAMS = { ln: 10, r: 8, p: 1 }

export interface FreshDatabase {
  /** The new database's URL; undefined on PGlite. */
  url: string | undefined
  database: Database
  /** A TokenService on the database (fast password parameters unless `service` options say otherwise). */
  service: TokenService
}

export interface FreshDatabaseOptions {
  /** Apply drizzle/ migrations (default true). */
  migrate?: boolean
  /** Options of the returned service (default `{ passwordParams: FAST_PASSWORD_PARAMS }`). */
  service?: TokenServiceOptions
  /** Runs on the empty database before migrating (e.g. to create a host app's own tables). */
  before?: (sql: postgres.Sql | undefined, database: Database) => Promise<void>
}

export function databaseUrl (): string | undefined {
  const url = process.env.DATABASE_URL
  return url === undefined || url === '' ? undefined : url
}

/** A postgres.js admin client on the server of DATABASE_URL, closed at teardown. */
function adminClient (url: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {} })
}

export function uniqueDatabaseName (): string {
  return `tat_test_${process.pid}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`
}

// Per test process: PGlite templates (an empty and a migrated in-memory database) that each test
// clones (≈0.7 s instead of ≈2-5 s for a new instance plus migrations), closed when the process's
// tests end; and a one-time sweep of test databases left by dead processes.
let templates: { empty: Promise<PGlite>, migrated: Promise<PGlite> } | undefined
let swept: Promise<void> | undefined

function pgliteTemplates (): { empty: Promise<PGlite>, migrated: Promise<PGlite> } {
  if (templates === undefined) {
    const empty = PGlite.create()
    const migrated = (async () => {
      const pg = await PGlite.create()
      await migrate(await createDatabase(undefined, { pglite: pg }))
      return pg
    })()
    templates = { empty, migrated }
    tap.teardown(async () => {
      await Promise.allSettled([empty, migrated].map(async (p) => { await (await p).close() }))
    })
  }
  return templates
}

/**
 * Drops `tat_test_<pid>_*` databases whose process is gone (a test file killed by a timeout cannot
 * run its teardown). Best effort; assumes the tests and PostgreSQL share this machine's pids, as in CI.
 */
async function sweepStaleDatabases (admin: postgres.Sql): Promise<void> {
  const rows = await admin<Array<{ datname: string }>>`select datname from pg_database where datname like 'tat\_test\_%'`
  for (const { datname } of rows) {
    const pid = Number(/^tat_test_(\d+)_/.exec(datname)?.[1])
    if (!Number.isInteger(pid) || pid === process.pid || pidIsAlive(pid)) continue
    await admin.unsafe(`drop database if exists "${datname}" with (force)`).catch(() => {})
  }
}

export async function freshDatabase (t: Test, opts: FreshDatabaseOptions = {}): Promise<FreshDatabase> {
  const base = databaseUrl()
  let database: Database
  let url: string | undefined
  let migrated = false
  if (base === undefined) {
    t.comment('no DATABASE_URL: running on PGlite')
    const useMigrated = opts.migrate !== false && opts.before === undefined
    const template = await (useMigrated ? pgliteTemplates().migrated : pgliteTemplates().empty)
    database = await createDatabase(undefined, { pglite: await template.clone() as PGlite })
    migrated = useMigrated
    t.teardown(() => database.close())
  } else {
    const name = uniqueDatabaseName()
    const admin = adminClient(base)
    swept ??= sweepStaleDatabases(admin).catch(() => {})
    await swept
    await admin.unsafe(`create database "${name}"`)
    const u = new URL(base)
    u.pathname = `/${name}`
    url = u.toString()
    try {
      database = await createDatabase(url, { max: 5 })
    } catch (err) {
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.end()
      throw err
    }
    const db = database
    t.teardown(async () => {
      try {
        await db.close()
      } finally {
        await admin.unsafe(`drop database if exists "${name}" with (force)`)
        await admin.end({ timeout: 5 })
      }
    })
  }
  if (opts.before !== undefined) await opts.before(database.sql, database)
  if (opts.migrate !== false && !migrated) await migrate(database)
  const service = new TokenService(database, opts.service ?? { passwordParams: FAST_PASSWORD_PARAMS })
  return { url, database, service }
}

/**
 * True when the test can use the PostgreSQL server of DATABASE_URL. Otherwise: with CI=true the test
 * fails (nothing may be skipped in CI); else it is marked skipped with the reason, and the caller
 * returns.
 */
export function requirePostgres (t: Test): boolean {
  if (databaseUrl() !== undefined) return true
  if (process.env.CI === 'true') {
    t.fail('this test needs PostgreSQL: DATABASE_URL must be set when CI=true (nothing may be skipped in CI)')
    return false
  }
  t.plan(0, 'skipped: needs PostgreSQL (set DATABASE_URL)')
  return false
}

/** Raw SQL on either kind of database, for assertions: rows as plain objects. */
export async function query<T = Record<string, unknown>> (database: Database, text: string, params: unknown[] = []): Promise<T[]> {
  if (database.sql !== undefined) return [...await database.sql.unsafe(text, params as never[])] as T[]
  if (database.pglite !== undefined) return (await database.pglite.query<T>(text, params)).rows
  throw new Error('query(): unknown database kind')
}

/** A drizzle db on the same connection that records the SQL of every query it runs. */
export function countingDb (database: Database): { db: TokenAuthDatabase, queries: string[] } {
  const queries: string[] = []
  const logger: Logger = { logQuery: (q) => { queries.push(q) } }
  const db = database.sql !== undefined
    ? drizzlePostgres(database.sql, { schema, logger })
    : drizzlePglite(database.pglite!, { schema, logger })
  return { db: db as unknown as TokenAuthDatabase, queries }
}
