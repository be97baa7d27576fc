/**
 * The store's Drizzle tables: the single source for drizzle-kit (see drizzle.config.ts; SQL in
 * drizzle/), and what `fastify-token-auth/schema` exports to an app's own drizzle-kit schema.
 *
 * Table names are prefixed (`token_auth_*`) so they coexist with a host app's own `users` table.
 * Usernames are stored normalized (store/usernames.ts); the unique index is on the normalized form.
 *
 * Tokens are stored only as the hex SHA-256 of the whole token string (`token_hash`, unique: the
 * unique index is the lookup index) plus a short visible `hint` for listings (`tat_AbC1`). A revoked
 * token is deleted, not flagged.
 */
// No project imports here: drizzle-kit loads this file on its own (through a require hook that does
// not map the `.js` of an ESM import onto a `.ts` file).
import { sql } from 'drizzle-orm'
import { bigint, boolean, index, pgTable, text, timestamp } from 'drizzle-orm/pg-core'

export const users = pgTable('token_auth_users', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  username: text('username').notNull().unique('token_auth_users_username_unique'),
  passwordHash: text('password_hash').notNull(),
  active: boolean('active').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  lastLoginAt: timestamp('last_login_at', { withTimezone: true })
})

export const tokens = pgTable('token_auth_tokens', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  userId: bigint('user_id', { mode: 'number' }).notNull().references(() => users.id, { onDelete: 'cascade' }),
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

export type User = typeof users.$inferSelect
export type NewUser = typeof users.$inferInsert
export type Token = typeof tokens.$inferSelect
export type NewToken = typeof tokens.$inferInsert
