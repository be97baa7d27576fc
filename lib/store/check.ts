/**
 * What the plugin checks before it serves: the database answers, and every table and column it reads
 * is there. Anything else is one line saying what is wrong and what to do (never the password of the
 * URL), instead of a driver's stack trace or a first request failing.
 */
import { sql } from 'drizzle-orm'
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core'
import type { UserSource } from '../users/user-source.js'
import type { TokenAuthDatabase } from './database.js'
import { StoreNotReadyError } from './errors.js'

/** Where a postgres URL points, without its password: `user@host:port/database`. */
export function describeUrl (url: string | undefined): string {
  if (url === undefined) return 'the embedded database'
  try {
    const u = new URL(url)
    return `${u.username === '' ? '' : decodeURIComponent(u.username) + '@'}${u.hostname}${u.port === '' ? '' : ':' + u.port}${u.pathname}`
  } catch {
    return 'the database (an unparsable URL)'
  }
}

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'nothing listens there',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name does not resolve',
  ETIMEDOUT: 'it did not answer in time',
  CONNECT_TIMEOUT: 'it did not answer in time',
  EHOSTUNREACH: 'the host is unreachable',
  CONNECTION_CLOSED: 'it closed the connection',
  CONNECTION_ENDED: 'it closed the connection',
  '28P01': 'the password was refused',
  28000: 'the login was refused',
  '3D000': 'that database does not exist',
  '57P03': 'the server is starting up or shutting down',
  53300: 'the server has too many connections'
}

/** The innermost error's code (Drizzle wraps the driver's in `cause`). */
function codeOf (err: unknown): string | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code
    const errors = (e as { errors?: unknown[] }).errors // AggregateError (IPv4 and IPv6 both refused)
    if (Array.isArray(errors) && errors.length > 0) return codeOf(errors[0])
  }
  return undefined
}

/** A startup failure as one line; a failure of another kind is returned as it is. */
export function startupError (err: unknown, url: string | undefined): unknown {
  if (err instanceof StoreNotReadyError) return err
  const code = codeOf(err)
  const why = code === undefined ? undefined : CONNECT_CODES[code]
  if (why === undefined) return err
  return new StoreNotReadyError(`cannot use the database at ${describeUrl(url)}: ${why} (${code})`)
}

/**
 * Checks that the database answers and holds every column of the tables the plugin reads (the tokens
 * table and the users' columns it uses). Throws StoreNotReadyError naming what is missing.
 */
export async function checkStore (db: TokenAuthDatabase, source: UserSource, url: string | undefined, more: readonly PgTable[] = []): Promise<void> {
  const allColumns = (table: PgTable): string[] => Object.values(getTableConfig(table).columns).map((c) => c.name)
  const wanted = [
    { table: source.tokens as PgTable, columns: allColumns(source.tokens) },
    { table: source.table, columns: [source.id, source.login, source.passwordHash, ...Object.values(source.user)].map((c) => c.name) },
    ...more.map((table) => ({ table, columns: allColumns(table) }))
  ]
  let rows: Array<{ table_schema: string, table_name: string, column_name: string }>
  try {
    const names = wanted.map((w) => getTableConfig(w.table).name)
    const result = await db.execute(sql`select table_schema, table_name, column_name from information_schema.columns
      where table_name in (${sql.join(names.map((n) => sql`${n}`), sql`, `)})`)
    rows = (Array.isArray(result) ? result : (result as { rows: typeof rows }).rows) as typeof rows
  } catch (err) {
    throw startupError(err, url)
  }
  for (const { table, columns } of wanted) {
    const config = getTableConfig(table)
    const schema = config.schema ?? 'public'
    const have = new Set(rows.filter((r) => r.table_name === config.name && r.table_schema === schema).map((r) => r.column_name))
    const ours = source.kind === 'builtin' || table !== source.table
    const fix = source.kind === 'builtin'
      ? 'run `fastify-token-auth migrate` (or `await migrate(database)`) first'
      : ours
        ? 'the tables are your app\'s: generate and apply your drizzle-kit migrations (drizzle-kit generate, then drizzle-kit migrate)'
        : 'check the table given to appUsers()'
    if (have.size === 0) throw new StoreNotReadyError(`table ${schema}.${config.name} does not exist in ${describeUrl(url)}: ${fix}`)
    const missing = [...new Set(columns)].filter((c) => !have.has(c))
    if (missing.length > 0) {
      throw new StoreNotReadyError(`table ${schema}.${config.name} in ${describeUrl(url)} has no column ${missing.join(', ')} ` +
        `(fastify-token-auth upgraded?): ${fix}`)
    }
  }
}
