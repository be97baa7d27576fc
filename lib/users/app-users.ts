/**
 * `appUsers()`: the app's own users table as the plugin's user source. The app keeps its table, its
 * ids (uuid, text, integer, bigint), its password hashes and the function that checks them (bcrypt,
 * argon2...), and its notion of a user who may no longer log in; the plugin's tokens reference it.
 *
 *   export const users = pgTable('users', { id: uuid('id').primaryKey().defaultRandom(), email: ..., passwordHash: ..., disabledAt: ... })
 *   export const { tokens } = tokenAuthTables(users.id)
 *   const source = appUsers({ table: users, tokens, login: users.email, passwordHash: users.passwordHash,
 *     verifyPassword: (password, hash) => bcrypt.compare(password, hash), active: isNull(users.disabledAt) })
 */
import { getTableColumns, is, SQL } from 'drizzle-orm'
import { getTableConfig, PgTable, type AnyPgColumn } from 'drizzle-orm/pg-core'
import { InvalidUsernameError } from '../store/errors.js'
import type { TokensTable } from '../store/schema.js'
import { invalid, object, optional, satisfies, string, type Check } from '../validate.js'
import { idKindOf, type UserSource } from './user-source.js'

export interface AppUsersOptions {
  /** The app's users table. */
  table: PgTable
  /** The tokens table made for it: `tokenAuthTables(table.id).tokens` (its user_id references the id). */
  tokens: TokensTable
  /** The column /login's `username` (and the CLI's `<user>`) is matched against, e.g. `users.email`. */
  login: AnyPgColumn
  /** The column holding the password hash. */
  passwordHash: AnyPgColumn
  /** Whether a password matches a stored hash, e.g. `(password, hash) => bcrypt.compare(password, hash)`. */
  verifyPassword: (password: string, hash: string) => boolean | Promise<boolean>
  /** When a user may log in and use tokens, e.g. `isNull(users.disabledAt)`. Default: always. */
  active?: SQL
  /** The columns `request.user` holds (beside `tokenId` and `scopes`). Default: the id and the login column. */
  user?: Record<string, AnyPgColumn>
  /** The stored form of a login name, e.g. `(email) => email.trim().toLowerCase()`. Default: as given. */
  normalizeLogin?: (login: string) => string
}

const LOGIN_MAX_LENGTH = 320 // the longest email address

const isFunction = (v: unknown): boolean => typeof v === 'function'
const isColumn = (v: unknown): boolean => typeof v === 'object' && v !== null && typeof (v as AnyPgColumn).getSQLType === 'function' && 'columnType' in v
const column = satisfies<AnyPgColumn>(isColumn, 'a column of the table (e.g. users.email)')

const columns: Check<Record<string, AnyPgColumn> | undefined> = (value, path) => {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalid(path, 'an object of columns, e.g. { id: users.id, email: users.email }', value)
  for (const [key, c] of Object.entries(value)) {
    if (key === 'tokenId' || key === 'scopes') invalid(`${path}.${key}`, 'another name: tokenId and scopes are the plugin\'s', key)
    column(c, `${path}.${key}`)
  }
  return value as Record<string, AnyPgColumn>
}

const appUsersOptions = object({
  table: satisfies<PgTable>((v) => is(v, PgTable), 'a Drizzle table (pgTable)'),
  tokens: satisfies<TokensTable>((v) => is(v, PgTable), 'the tokens table from tokenAuthTables(users.id)'),
  login: column,
  passwordHash: column,
  verifyPassword: satisfies<AppUsersOptions['verifyPassword']>(isFunction, 'a function (password, hash) => boolean | Promise<boolean>'),
  active: optional(satisfies<SQL>((v) => is(v, SQL), 'an SQL condition, e.g. isNull(users.disabledAt)')),
  user: columns,
  normalizeLogin: optional(satisfies<(login: string) => string>(isFunction, 'a function (login) => string')),
  // Not an option of its own: the message names what to pass.
  name: optional(string({ expected: 'a name' }))
})

/** The app's users table as the plugin's user source; options checked now, with clear messages. */
export function appUsers (options: AppUsersOptions): UserSource {
  const o = appUsersOptions(options, 'appUsers')
  const { table, tokens } = o
  const tableColumns = getTableColumns(table) as Record<string, AnyPgColumn>
  const keyOf = (c: AnyPgColumn): string | undefined => Object.keys(tableColumns).find((k) => tableColumns[k] === c)
  for (const name of ['login', 'passwordHash'] as const) {
    if (keyOf(o[name]) === undefined) invalid(`appUsers.${name}`, `a column of the users table ${getTableConfig(table).name}`, o[name].name)
  }
  const id = referencedId(tokens, table)
  const normalize = o.normalizeLogin ?? ((login: string) => login)
  const verify = o.verifyPassword
  return Object.freeze({
    kind: 'app',
    table,
    id,
    tokens,
    idKind: idKindOf(id),
    login: o.login,
    passwordHash: o.passwordHash,
    active: o.active,
    user: Object.freeze(o.user ?? { [keyOf(id) as string]: id, [keyOf(o.login) as string]: o.login }),
    normalizeLogin (login: string): string {
      const value = typeof login === 'string' ? normalize(login) : login
      if (typeof value !== 'string' || value === '' || value.length > LOGIN_MAX_LENGTH) throw new InvalidUsernameError('not a login name')
      return value
    },
    async verifyPassword (password: string, hash: string): Promise<boolean> {
      return typeof hash === 'string' && await verify(password, hash) === true
    }
  } satisfies UserSource)
}

/** The users' id column the tokens table's user_id references (checked to be of `table`). */
function referencedId (tokens: TokensTable, table: PgTable): AnyPgColumn {
  const fk = getTableConfig(tokens).foreignKeys.find((f) => f.reference().columns[0]?.name === 'user_id')
  const ref = fk?.reference()
  if (ref === undefined || ref.foreignTable !== table) {
    invalid('appUsers.tokens', `the tokens table made for this users table: tokenAuthTables(${getTableConfig(table).name}.id).tokens`, 'another table')
  }
  return ref.foreignColumns[0] as AnyPgColumn
}
