/**
 * Drizzle tables: the single source for drizzle-kit (see drizzle.config.ts; SQL in drizzle/).
 *
 * Table names are prefixed (`token_auth_*`) so they coexist with a host app's own `users` table.
 *
 * Usernames are stored normalized (see `normalizeUsername`): NFKC, then lower case. `Alice`,
 * `ALICE` and `ａｌｉｃｅ` (fullwidth) are the same account; the unique index is on the normalized form.
 *
 * Tokens are stored only as the hex SHA-256 of the whole token string (`token_hash`, unique: the
 * unique index is the lookup index) plus a short visible `prefix` for listings. A revoked token is
 * deleted, not flagged.
 */
// No project imports here: drizzle-kit loads this file on its own, and cannot resolve them.
import { sql } from 'drizzle-orm'
import { bigint, boolean, index, pgTable, text, timestamp } from 'drizzle-orm/pg-core'

export const USERNAME_MAX_LENGTH = 150

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
  prefix: text('prefix').notNull().default(''),
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

/** Thrown by `normalizeUsername` for a name that breaks the rules. */
export class InvalidUsernameError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'InvalidUsernameError'
  }
}

/**
 * The stored form of a username: NFKC-normalized, then lower-cased.
 * Throws an Error with a clear message when the name is not a string, is empty or longer than 150
 * characters (after normalization), has leading or trailing whitespace, or contains control
 * characters (C0, DEL, C1) or line/paragraph separators.
 */
export function normalizeUsername (username: string): string {
  if (typeof username !== 'string') throw new InvalidUsernameError('username must be a string')
  const normalized = username.normalize('NFKC').toLowerCase()
  if (normalized.length === 0) throw new InvalidUsernameError('username must not be empty')
  if (normalized.length > USERNAME_MAX_LENGTH) {
    throw new InvalidUsernameError(`username must be at most ${USERNAME_MAX_LENGTH} characters long`)
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(normalized)) { // grammar.ts's CONTROL_CHARS
    throw new InvalidUsernameError('username must not contain control characters')
  }
  if (normalized.trim() !== normalized) {
    throw new InvalidUsernameError('username must not start or end with whitespace')
  }
  return normalized
}
