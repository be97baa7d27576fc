/**
 * Where users come from: one interface, two sources. The plugin's own `token_auth_users` (the
 * default: scrypt passwords, NFKC lower-cased usernames, an `active` flag), or the app's own table
 * (`appUsers()`: its id type, its login column, its password function, its "active" condition).
 * The TokenService and the database provider only ever read users through this.
 */
import { sql, type SQL } from 'drizzle-orm'
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core'
import type { TokensTable } from '../store/schema.js'

/** A user's id: a number (integer or bigint ids) or a string (uuid or text ids). */
export type UserId = number | string

export interface UserSource {
  readonly kind: 'builtin' | 'app'
  /** The users table, its primary key, and the tokens table referencing it. */
  readonly table: PgTable
  readonly id: AnyPgColumn
  readonly tokens: TokensTable
  /** What ids look like: numbers, uuids or other strings (checked before a query). */
  readonly idKind: 'number' | 'uuid' | 'string'
  /** The column a login name is matched against (username, email...). */
  readonly login: AnyPgColumn
  readonly passwordHash: AnyPgColumn
  /** When a user may log in and use tokens (e.g. `isNull(users.disabledAt)`); undefined: always. */
  readonly active: SQL | undefined
  /** The columns copied into `request.user` (beside `tokenId` and `scopes`). */
  readonly user: Readonly<Record<string, AnyPgColumn>>
  /** The stored form of a login name; throws InvalidUsernameError for one that cannot exist. */
  normalizeLogin: (login: string) => string
  /** Whether `password` matches the stored `hash`. */
  verifyPassword: (password: string, hash: string) => Promise<boolean>
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** True when `id` can be an id of this source (so a query never fails on its type). */
export function isUserId (source: UserSource, id: unknown): id is UserId {
  switch (source.idKind) {
    case 'number': return typeof id === 'number' && Number.isSafeInteger(id)
    case 'uuid': return typeof id === 'string' && UUID_RE.test(id)
    case 'string': return typeof id === 'string' && id !== '' && id.length <= 1024
  }
}

/** The kind of ids a primary-key column holds. */
export function idKindOf (column: AnyPgColumn): UserSource['idKind'] {
  if (column.columnType === 'PgUUID') return 'uuid'
  return column.dataType === 'number' ? 'number' : 'string'
}

/** The source's `active` condition as a selected boolean (true when it has none). */
export function activeColumn (source: UserSource): SQL<boolean> {
  const active = source.active
  return (active === undefined ? sql`true` : sql`coalesce((${active}), false)`).mapWith(Boolean) as SQL<boolean>
}
