/**
 * An app with its own users table, as the README describes it: the app's Drizzle schema (uuid or
 * integer ids, an email login, a bcrypt hash, a `disabled_at` flag), the plugin's tokens table made for
 * it by tokenAuthTables(), and the SQL drizzle-kit generates for that schema (through drizzle-kit's own
 * API: the same code as `drizzle-kit generate`), applied to a test database.
 */
import { createRequire } from 'node:module'
import bcrypt from 'bcryptjs'
import { isNull } from 'drizzle-orm'
import { getTableConfig, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { appUsers } from '../../lib/users/app-users.js'
import { tokenAuthTables } from '../../lib/store/schema.js'
import type { Database } from '../../lib/store/database.js'
import { query } from './db.js'

const require = createRequire(import.meta.url)
const kit = require('drizzle-kit/api') as {
  generateDrizzleJson: (schema: Record<string, unknown>) => unknown
  generateMigration: (prev: unknown, cur: unknown) => Promise<string[]>
}

export function uuidSchema () {
  const users = pgTable('users', {
    id: uuid('id').primaryKey().defaultRandom(),
    email: text('email').notNull().unique(),
    passwordHash: text('password_hash').notNull(),
    disabledAt: timestamp('disabled_at', { withTimezone: true })
  })
  return { users, ...tokenAuthTables(users.id) }
}

export function integerSchema () {
  const users = pgTable('accounts', {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    email: text('email').notNull().unique(),
    passwordHash: text('password_hash').notNull(),
    disabledAt: timestamp('disabled_at', { withTimezone: true })
  })
  return { users, ...tokenAuthTables(users.id) }
}

export type AppSchema = ReturnType<typeof uuidSchema> | ReturnType<typeof integerSchema>

/** The SQL drizzle-kit generates for `schema` from an empty database. */
export async function generatedSql (schema: Record<string, unknown>): Promise<string[]> {
  return await kit.generateMigration(kit.generateDrizzleJson({}), kit.generateDrizzleJson(schema))
}

/** Creates the schema's tables in the database, as `drizzle-kit generate` + `migrate` would. */
export async function applySchema (database: Database, schema: Record<string, unknown>): Promise<void> {
  for (const statement of await generatedSql(schema)) await query(database, statement)
}

/** The user source for it: bcrypt (cost 4: quick), emails lower-cased, disabled users refused. */
export function sourceFor (schema: AppSchema, verify = (password: string, hash: string) => bcrypt.compare(password, hash)) {
  const { users, tokens } = schema
  return appUsers({
    table: users,
    tokens,
    login: users.email,
    passwordHash: users.passwordHash,
    verifyPassword: verify,
    active: isNull(users.disabledAt),
    normalizeLogin: (email) => email.trim().toLowerCase()
  })
}

/** Inserts a user with a bcrypt hash; resolves to its id. */
export async function insertUser (database: Database, schema: AppSchema, email: string, password: string): Promise<string | number> {
  const table = getTableConfig(schema.users).name
  const rows = await query<{ id: string | number }>(database, `insert into ${table} (email, password_hash) values ($1, $2) returning id`, [email, await bcrypt.hash(password, 4)])
  return rows[0].id
}
