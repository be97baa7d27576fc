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
import postgres from 'postgres'
import type { Test } from 'tap'
import { createDatabase, migrate, type Database } from '../../lib/store/database.js'
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

export async function freshDatabase (t: Test, opts: FreshDatabaseOptions = {}): Promise<FreshDatabase> {
  const base = databaseUrl()
  let database: Database
  let url: string | undefined
  if (base === undefined) {
    t.comment('no DATABASE_URL: running on PGlite')
    database = await createDatabase(undefined, { memory: true })
    t.teardown(() => database.close())
  } else {
    const name = uniqueDatabaseName()
    const admin = adminClient(base)
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
  if (opts.migrate !== false) await migrate(database)
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
