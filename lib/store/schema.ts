/**
 * The store's Drizzle tables: the single source for drizzle-kit (see drizzle.config.ts; SQL in
 * drizzle/), and what `fastify-token-auth/schema` exports to an app's own drizzle-kit schema.
 *
 * - `users` and `tokens`: the plugin's own tables (`token_auth_users`, `token_auth_tokens`), the
 *   zero-configuration default, migrated by `migrate()` / `fastify-token-auth migrate`.
 * - `tokenAuthTables(appUsers.id)`: a `token_auth_tokens` table whose `user_id` references the app's
 *   own users table (same type as its id: uuid, text, integer or bigint; ON DELETE CASCADE), for an app
 *   that keeps its users and runs drizzle-kit itself.
 *
 * - `throttle` and `events`: the login counters and the audit trail, the same for both.
 *
 * Tokens are stored only as the hex SHA-256 of the whole token string (`token_hash`, unique: the
 * unique index is the lookup index) plus a short visible `hint` for listings (`tat_AbC1`). A revoked
 * token is deleted, not flagged. Usernames are stored normalized (store/usernames.ts).
 */
// No project imports here: drizzle-kit loads this file (and an app's schema importing
// fastify-token-auth/schema) through a require hook, which does not map an ESM `.js` import onto a
// `.ts` file. The package ships it as CommonJS too, for that hook.
import { sql } from 'drizzle-orm'
import {
  bigint, boolean, index, integer, jsonb, pgTable, text, timestamp, uuid, type AnyPgColumn, type PgColumnBuilderBase
} from 'drizzle-orm/pg-core'

export const users = pgTable('token_auth_users', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  username: text('username').notNull().unique('token_auth_users_username_unique'),
  passwordHash: text('password_hash').notNull(),
  active: boolean('active').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  lastLoginAt: timestamp('last_login_at', { withTimezone: true })
})

/** The tokens table, with `userId` the column given (a fresh builder each call). */
function tokensTable<U extends PgColumnBuilderBase> (userId: U) {
  return pgTable('token_auth_tokens', {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    userId,
    tokenHash: text('token_hash').notNull().unique('token_auth_tokens_token_hash_unique'),
    hint: text('hint').notNull().default(''),
    name: text('name').notNull().default(''),
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true })
  }, (t) => [
    index('token_auth_tokens_user_id_idx').on(t.userId)
  ])
}

const cascade = { onDelete: 'cascade' } as const
const userIdColumns = {
  uuid: (ref: () => AnyPgColumn) => uuid('user_id').notNull().references(ref, cascade),
  text: (ref: () => AnyPgColumn) => text('user_id').notNull().references(ref, cascade),
  integer: (ref: () => AnyPgColumn) => integer('user_id').notNull().references(ref, cascade),
  bigint: (ref: () => AnyPgColumn) => bigint('user_id', { mode: 'number' }).notNull().references(ref, cascade)
}
type Kinds = typeof userIdColumns
const KIND_OF: Record<string, keyof Kinds> = {
  PgUUID: 'uuid',
  PgText: 'text',
  PgVarchar: 'text',
  PgInteger: 'integer',
  PgSerial: 'integer',
  PgBigInt53: 'bigint',
  PgBigSerial53: 'bigint'
}
type KindOf<C> = C extends { columnType: 'PgUUID' } ? 'uuid'
  : C extends { columnType: 'PgText' | 'PgVarchar' } ? 'text'
    : C extends { columnType: 'PgInteger' | 'PgSerial' } ? 'integer'
      : C extends { columnType: 'PgBigInt53' | 'PgBigSerial53' } ? 'bigint'
        : never

export const tokens = tokensTable(bigint('user_id', { mode: 'number' }).notNull().references(() => users.id, cascade))

/**
 * Login throttling counters, shared by every process: one row per key (`pair:`, `ip:`, `account:`,
 * `known:`), its count and when its window ends. Increments are single upserts (no read-modify-write);
 * rows whose window ended are deleted by the maintenance job.
 */
export const throttle = pgTable('token_auth_throttle', {
  key: text('key').primaryKey(),
  count: integer('count').notNull(),
  resetAt: timestamp('reset_at', { withTimezone: true }).notNull()
}, (t) => [
  index('token_auth_throttle_reset_at_idx').on(t.resetAt)
])

/**
 * The audit trail (when `events.table` is on): append-only, never a token, a hash or a password.
 * The user is kept as text, whatever the type of the users' ids.
 */
export const events = pgTable('token_auth_events', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  type: text('type').notNull(),
  userId: text('user_id'),
  tokenId: bigint('token_id', { mode: 'number' }),
  ip: text('ip'),
  detail: jsonb('detail').notNull().default({})
}, (t) => [
  index('token_auth_events_at_idx').on(t.at),
  index('token_auth_events_user_id_at_idx').on(t.userId, t.at)
])

/** A tokens table: the plugin's own, or one from tokenAuthTables (its user_id of any supported type). */
export type TokensTable = ReturnType<typeof tokensTable<ReturnType<Kinds[keyof Kinds]>>>

/**
 * The plugin's tables for an app that keeps its own users: `token_auth_tokens` with a `user_id` of the
 * same type as `userId` (the app's users' primary key), referencing it with ON DELETE CASCADE.
 * Put the result in your drizzle-kit schema and generate the migration with `drizzle-kit generate`.
 *
 *   export const users = pgTable('users', { id: uuid('id').primaryKey().defaultRandom(), ... })
 *   export const { tokens, throttle, events } = tokenAuthTables(users.id)
 *
 * `throttle` (the login counters) and `events` (the audit trail) do not depend on the users table;
 * include them in your schema too.
 */
export function tokenAuthTables<C extends AnyPgColumn> (userId: C): {
  tokens: ReturnType<typeof tokensTable<ReturnType<Kinds[KindOf<C['_']>]>>>
  throttle: typeof throttle
  events: typeof events
} {
  const kind = KIND_OF[userId.columnType]
  if (kind === undefined) {
    throw new TypeError(`fastify-token-auth: tokenAuthTables(): a user id of type ${userId.getSQLType()} (${userId.columnType}) is not supported; ` +
      'use uuid, text, varchar, integer, serial or bigint with { mode: "number" }')
  }
  return { tokens: tokensTable(userIdColumns[kind](() => userId)) as never, throttle, events }
}

export type User = typeof users.$inferSelect
export type NewUser = typeof users.$inferInsert
export type Token = typeof tokens.$inferSelect
export type NewToken = typeof tokens.$inferInsert
