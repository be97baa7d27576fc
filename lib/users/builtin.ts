// The plugin's own users (`token_auth_users`): the zero-configuration default.
import { sql } from 'drizzle-orm'
import { verifyPassword } from '../store/passwords.js'
import { tokens, users } from '../store/schema.js'
import { normalizeUsername } from '../store/usernames.js'
import type { UserSource } from './user-source.js'

export const builtinUsers: UserSource = Object.freeze({
  kind: 'builtin',
  table: users,
  id: users.id,
  tokens,
  idKind: 'number',
  login: users.username,
  passwordHash: users.passwordHash,
  active: sql`${users.active}`,
  user: Object.freeze({ id: users.id, username: users.username }),
  normalizeLogin: normalizeUsername,
  verifyPassword
})
