/**
 * TokenService: the lifecycle of users and tokens. It is the only code that writes the store's
 * tables; the routes, the CLI and apps all go through it.
 *
 *   const database = await createDatabase(process.env.DATABASE_URL)
 *   await migrate(database)
 *   const service = new TokenService(database)            // anything with a `db` works
 *   await service.createUser('alice', 'correct horse battery staple')
 *   const user = await service.verifyCredentials('alice', '...')
 *   const { token } = await service.issueToken(user.id, { name: 'laptop', expiresIn: 86400 })
 *
 * Revocation deletes rows (a revoked token is gone, not flagged). Every revoke, deactivate and prune
 * deletes with `RETURNING token_hash` and, in the same transaction, sends the hashes with
 * `pg_notify(notifyChannel, 'h1,h2,...')` (chunked, each payload < 7900 bytes); once committed, and
 * before the returned promise resolves, it calls the `onRevoke` listeners synchronously. Caches use
 * both: `onRevoke` in this process, LISTEN (see `Database.listen`) in every other.
 */
import { and, desc, eq, gt, inArray, isNull, lte, ne, or, sql, type SQL } from 'drizzle-orm'
import { CONTROL_CHARS, isScopeToken, SCOPE_MAX_LENGTH } from '../grammar.js'
import { builtinUsers } from '../users/builtin.js'
import { activeColumn, isUserId, type UserId, type UserSource } from '../users/user-source.js'
import { arrayOf, bool, integer, invalid, nullable, object, offByDefault, oneOf, optional, orFalse, satisfies, seconds, string, type Checked } from '../validate.js'
import { EventLog, type TokenAuthEventType } from '../events.js'
import { Metrics } from '../metrics.js'
import type { TokenAuthDatabase } from './database.js'
import { CredentialsChangedError, InvalidTokenOptionsError, ParentTokenGoneError, TokenLimitError, UserExistsError, UserInactiveError, UserNotFoundError, UsersOwnedByAppError } from './errors.js'
import { EqualTime } from './equal-time.js'
import { defaultKdfConcurrency, KdfQueue, type KdfJobOptions } from './kdf-queue.js'
import { CHANNEL_RE, DEFAULT_NOTIFY_CHANNEL, notifyStatement } from './notify.js'
import { dummyVerify, hashPassword, needsRehash, parseParams, PASSWORD_PARAM_LIMITS, type PasswordParams } from './passwords.js'
import { events as eventsTable, users, type TokensTable } from './schema.js'
import { DEFAULT_TOKEN_PREFIX, generateToken, hashToken, PREFIX_RE, tokenHint } from './token-format.js'
import { normalizeUsername } from './usernames.js'

export { DEFAULT_NOTIFY_CHANNEL }
export const TOKEN_NAME_MAX_LENGTH = 200
export const MAX_SCOPES = 64
export { SCOPE_MAX_LENGTH }
/** Longest accepted `expiresIn`: 10 years, in seconds. */
export const MAX_EXPIRES_IN = 10 * 366 * 24 * 3600
const PRUNE_BATCH = 5000
const TOUCH_BATCH = 5000

/** A token prefix option: /^[a-z][a-z0-9]{0,15}$/. */
export const prefixOption = string({ pattern: PREFIX_RE, expected: 'a token prefix: a lowercase letter, then up to 15 lowercase letters or digits (/^[a-z][a-z0-9]{0,15}$/)' })
/** A NOTIFY channel option: a lowercase SQL identifier. */
export const channelOption = string({ pattern: CHANNEL_RE, expected: 'a NOTIFY channel: lowercase letters, digits and _, at most 63 (/^[a-z_][a-z0-9_]{0,62}$/)' })

const param = (key: keyof typeof PASSWORD_PARAM_LIMITS, def: number) =>
  integer({ min: PASSWORD_PARAM_LIMITS[key][0], max: PASSWORD_PARAM_LIMITS[key][1], default: def })

/** The TokenService's options (the plugin's `service` object). */
const isUserSource = (v: unknown): boolean => typeof (v as UserSource | null)?.verifyPassword === 'function' && typeof (v as UserSource).kind === 'string'

export const serviceOptions = object({
  prefix: (value: unknown, path: string) => prefixOption(value ?? DEFAULT_TOKEN_PREFIX, path),
  acceptPrefixes: arrayOf(prefixOption, { max: 16, expected: 'an array of earlier token prefixes (at most 16)', default: [] }),
  users: optional(satisfies<UserSource>(isUserSource, 'a user source: appUsers({ table, tokens, login, passwordHash, verifyPassword })')),
  passwordParams: object({ ln: param('ln', 17), r: param('r', 8), p: param('p', 1) }),
  notifyChannel: (value: unknown, path: string) => channelOption(value ?? DEFAULT_NOTIFY_CHANNEL, path),
  passwordConcurrency: optional(integer({ min: 1, max: 1024 })),
  passwordReserved: integer({ min: 0, max: 1024, default: 1 }),
  passwordQueue: integer({ min: 0, max: 100_000, default: 16 }),
  maxTokensPerUser: orFalse(integer({ min: 1, max: 1_000_000, default: 100 })),
  onTokenLimit: oneOf(['refuse', 'revokeOldest'] as const, 'refuse'),
  maxTokenLifetime: nullable(seconds(undefined, 1, MAX_EXPIRES_IN)),
  slidingExpiry: offByDefault(seconds(undefined, 1, MAX_EXPIRES_IN)),
  revokeOnPasswordChange: bool(true),
  events: object({
    table: bool(false),
    retention: orFalse(seconds(90 * 24 * 3600, 1, MAX_EXPIRES_IN))
  })
})
export type ResolvedServiceOptions = Checked<typeof serviceOptions>

export interface TokenServiceOptions {
  /** Token prefix of new tokens, /^[a-z][a-z0-9]{0,15}$/ (default 'tat'). */
  prefix?: string
  /** Earlier prefixes whose tokens are still accepted (after `prefix` changed). Default none. */
  acceptPrefixes?: readonly string[]
  /** Where users are: the plugin's own table (default) or the app's (`appUsers({...})`). */
  users?: UserSource
  /** scrypt parameters for new hashes (default N=2^17, r=8, p=1); older hashes are upgraded on login. */
  passwordParams?: Partial<PasswordParams>
  /** NOTIFY channel for revocations (default 'token_auth_revoked'). */
  notifyChannel?: string
  /** Password derivations at once (default: cores − 1, at least 1); see kdf-queue.ts. */
  passwordConcurrency?: number
  /** More derivations at once for trusted clients (an address the account logged in from, or with
   * no failure yet), so that a flood from a few clients cannot hold every slot (default 1). */
  passwordReserved?: number
  /** Login password checks allowed to wait before the next fails with KdfBusyError (default 16);
   * createUser and setPassword always wait. */
  passwordQueue?: number
  /** Live tokens one user may hold (default 100); `false`: no limit. */
  maxTokensPerUser?: number | false
  /** At the limit: refuse a new token (TokenLimitError, default) or revoke the user's oldest. */
  onTokenLimit?: 'refuse' | 'revokeOldest'
  /** The longest a token may live, in seconds, sliding included; null (default): no maximum. A token
   * asked for without a lifetime gets this one. */
  maxTokenLifetime?: number | null
  /** Seconds a token's expiry moves forward when it is used (it never ends before `now + this`, nor
   * after its creation + maxTokenLifetime); written with last_used_at, batched. Tokens that never
   * expire stay so. Default false. */
  slidingExpiry?: number | false
  /** Changing a password revokes the user's other tokens (default true). */
  revokeOnPasswordChange?: boolean
  /** The audit trail: `table` writes the events to token_auth_events (default false: the
   * diagnostics channel only), kept `retention` seconds (default 90 days; false: forever). */
  events?: { table?: boolean, retention?: number | false }
}

export interface PasswordChangeOptions {
  /** Keep the user's other tokens (default: revoke them, unless the service says otherwise). */
  keepTokens?: boolean
  /** The token the change was made with, kept when the others are revoked. */
  exceptTokenId?: number
}

/** Who a login comes from, for the fair share of the password checks (see kdf-queue.ts). */
export interface CredentialsContext {
  /** The client's keys, e.g. its address and its account. */
  clients?: readonly string[]
  /** May use the reserved slots. */
  trusted?: boolean
}

/** A user in the service's answers: never the password hash. `username` is the login name. */
export interface ServiceUser { id: UserId, username: string }

export interface UserInfo extends ServiceUser {
  active: boolean
  /** The plugin's own users only. */
  createdAt?: Date
  lastLoginAt?: Date | null
}

/** A user: an id (a number), a login name (a string), or either said explicitly (uuid ids: `{ id }`). */
export type UserRef = number | string | { id: UserId } | { username: string }

export interface IssueTokenOptions {
  /** A name for the device or purpose (at most 200 characters, no control characters). */
  name?: string
  /** Scopes the token carries (RFC 6749 scope-tokens, at most 64, duplicates removed). */
  scopes?: readonly string[]
  /** Lifetime in seconds (a positive integer, at most 10 years); omitted or null: never expires. */
  expiresIn?: number | null
  /**
   * The id of the token this one is asked with (POST /tokens): issued only while that token lives,
   * checked in the issuing transaction (so a revocation of all the user's tokens that runs at the
   * same time takes both), and never outliving it (its expiry is capped at the parent's).
   * @throws ParentTokenGoneError when it was revoked or has expired
   */
  parentTokenId?: number
  /**
   * What verifyCredentials returned for this user (/login): issued only if the password is still the
   * one it checked, so that a login racing a password change cannot keep a token made with the old
   * password. @throws CredentialsChangedError
   */
  credentials?: ServiceUser
}

export interface IssuedToken {
  /** The plain token: shown once, never stored. */
  token: string
  id: number
  name: string
  scopes: string[]
  expiresAt: Date | null
  /** Its lifetime in seconds, as given or defaulted (maxTokenLifetime); null: it never expires. */
  expiresIn: number | null
}

/** A token as listed: no secret, no hash. */
export interface TokenInfo {
  id: number
  name: string
  /** The visible start of the token, e.g. `tat_AbC1`: enough to tell tokens apart, useless to an attacker. */
  hint: string
  scopes: string[]
  createdAt: Date
  lastUsedAt: Date | null
  expiresAt: Date | null
}

/** An event as the table keeps it (service.events.table). */
export interface StoredEvent {
  id: number
  at: Date
  type: string
  userId: string | null
  tokenId: number | null
  ip: string | null
  detail: Record<string, unknown>
}

export type RevokeListener = (hashes: string[]) => void
export type UserChangedListener = (userId: UserId) => void

/** The NOTIFY payload announcing that a user changed (their cached tokens must be forgotten). */
export const USER_CHANGED_PREFIX = 'user:'

type Tx = Parameters<Parameters<TokenAuthDatabase['transaction']>[0]>[0]
type Executor = TokenAuthDatabase | Tx

export class TokenService {
  readonly db: TokenAuthDatabase
  readonly prefix: string
  /** The prefix of new tokens first, then the earlier ones still accepted. */
  readonly prefixes: readonly string[]
  readonly notifyChannel: string
  readonly passwordParams: PasswordParams
  readonly users: UserSource
  readonly #tokens: TokensTable
  readonly #revokeListeners = new Set<RevokeListener>()
  readonly #userListeners = new Set<UserChangedListener>()
  readonly #kdf: KdfQueue
  readonly #equalTime = new EqualTime()
  readonly #o: ResolvedServiceOptions
  /** Counters for `fastify.tokenAuth.metrics()`. */
  readonly metrics = new Metrics()
  /** The audit trail (events.ts): the diagnostics channel, and the table with `events.table`. */
  readonly events: EventLog
  #dummyHash: string | undefined
  /** The hash each answer of verifyCredentials was checked against (for issueToken's `credentials`). */
  readonly #verified = new WeakMap<ServiceUser, string>()
  /** The costliest scrypt parameters in use (stored or configured), and when they were read. */
  #costliest: { params: PasswordParams, readAt: number } | undefined

  /**
   * @param database anything with a Drizzle `db` on the store's tables: the result of
   *   `createDatabase()`, or `{ db }` for a drizzle database the app built (postgres.js or PGlite).
   *   The service only queries; it never listens or closes the database (its owner does).
   */
  constructor (database: { db: TokenAuthDatabase }, options: TokenServiceOptions = {}) {
    if (typeof database?.db !== 'object') invalid('TokenService.database', 'a database ({ db }), e.g. the result of createDatabase()', database)
    const o = serviceOptions(options, 'TokenService')
    this.#o = o
    this.db = database.db
    this.prefix = o.prefix
    this.prefixes = Object.freeze([...new Set([o.prefix, ...o.acceptPrefixes])])
    this.notifyChannel = o.notifyChannel
    this.passwordParams = { ...o.passwordParams }
    this.users = o.users ?? builtinUsers
    this.#tokens = this.users.tokens
    this.#kdf = new KdfQueue({ concurrency: o.passwordConcurrency ?? defaultKdfConcurrency(), reserved: o.passwordReserved, maxWaiting: o.passwordQueue })
    this.events = new EventLog(o.events.table ? eventsTableSink(this.db) : undefined)
  }

  /** The options this service was made with, resolved. */
  get options (): ResolvedServiceOptions {
    return this.#o
  }

  /**
   * Calls `listener(hashes)` synchronously after every committed revocation in this service (before
   * the revoking call resolves). Returns a function that removes the listener.
   */
  onRevoke (listener: RevokeListener): () => void {
    this.#revokeListeners.add(listener)
    return () => { this.#revokeListeners.delete(listener) }
  }

  /** Calls `listener(userId)` when `userChanged(userId)` is called in this service. */
  onUserChanged (listener: UserChangedListener): () => void {
    this.#userListeners.add(listener)
    return () => { this.#userListeners.delete(listener) }
  }

  // ---- the plugin's own users ----------------------------------------------------------------

  /**
   * Creates an active user in the plugin's users table. The username is stored normalized (NFKC,
   * lower case).
   * @throws UserExistsError, InvalidUsernameError, InvalidPasswordError, UsersOwnedByAppError
   */
  async createUser (username: string, password: string): Promise<ServiceUser> {
    this.#builtinOnly('createUser')
    const name = normalizeUsername(username)
    const existing = await this.db.select({ id: users.id }).from(users).where(eq(users.username, name)).limit(1)
    if (existing.length > 0) throw new UserExistsError(name)
    const passwordHash = await this.#kdf.run(() => hashPassword(password, this.passwordParams), APP_WORK)
    const rows = await this.db.insert(users).values({ username: name, passwordHash })
      .onConflictDoNothing({ target: users.username })
      .returning({ id: users.id, username: users.username })
    if (rows.length === 0) throw new UserExistsError(name)
    this.events.emit('user.created', { userId: String(rows[0].id), detail: { username: rows[0].username } })
    return rows[0]
  }

  /**
   * Replaces a user's password. Unless `keepTokens` (or the service's `revokeOnPasswordChange: false`),
   * every other token of the user is revoked: all of them, or all but `exceptTokenId` (the one the
   * change was made with). Resolves to the number revoked.
   * @throws UserNotFoundError, InvalidUsernameError, InvalidPasswordError, UsersOwnedByAppError
   */
  async setPassword (username: string, password: string, options: PasswordChangeOptions = {}): Promise<{ revoked: number }> {
    this.#builtinOnly('setPassword')
    const name = normalizeUsername(username)
    const passwordHash = await this.#kdf.run(() => hashPassword(password, this.passwordParams), APP_WORK)
    const rows = await this.db.update(users).set({ passwordHash }).where(eq(users.username, name)).returning({ id: users.id })
    if (rows.length === 0) throw new UserNotFoundError(name)
    return await this.passwordChanged(rows[0].id, options)
  }

  /**
   * Says a user's password changed (for the app's own users, after the app changed it): revokes the
   * user's other tokens as setPassword does, and records the event. Resolves to the number revoked.
   */
  async passwordChanged (userId: UserId, options: PasswordChangeOptions = {}): Promise<{ revoked: number }> {
    if (!isUserId(this.users, userId)) throw new UserNotFoundError(userId)
    const revoke = options.keepTokens !== true && this.#o.revokeOnPasswordChange
    const revoked = revoke ? await this.revokeAllTokens({ id: userId }, { except: options.exceptTokenId }) : 0
    this.events.emit('password.changed', { userId: String(userId), detail: { revoked } })
    return { revoked }
  }

  /**
   * Marks the user inactive and deletes all their tokens, in one transaction (with the NOTIFY).
   * Returns the number of tokens revoked.
   * @throws UserNotFoundError, InvalidUsernameError, UsersOwnedByAppError
   */
  async deactivateUser (username: string): Promise<{ id: UserId, revoked: number }> {
    this.#builtinOnly('deactivateUser')
    const name = normalizeUsername(username)
    const tokens = this.#tokens
    const { id, hashes } = await this.db.transaction(async (tx) => {
      const rows = await tx.update(users).set({ active: false }).where(eq(users.username, name)).returning({ id: users.id })
      if (rows.length === 0) throw new UserNotFoundError(name)
      const deleted = await tx.delete(tokens).where(eq(tokens.userId, rows[0].id)).returning({ tokenHash: tokens.tokenHash })
      const hashes = deleted.map((r) => r.tokenHash)
      await this.#notify(tx, hashes)
      return { id: rows[0].id, hashes }
    })
    this.#emit(hashes)
    this.metrics.tokens.revoked += hashes.length
    this.events.emit('user.deactivated', { userId: String(id), detail: { revoked: hashes.length } })
    return { id, revoked: hashes.length }
  }

  // ---- any users -----------------------------------------------------------------------------

  /** Looks a user up by id or login name (no password hash); null when there is none. */
  async findUser (user: UserRef): Promise<UserInfo | null> {
    const src = this.users
    const where = this.#userWhere(user)
    if (where === undefined) return null
    if (src.kind === 'builtin') {
      const rows = await this.db.select({
        id: users.id, username: users.username, active: users.active, createdAt: users.createdAt, lastLoginAt: users.lastLoginAt
      }).from(users).where(where).limit(1)
      return rows[0] ?? null
    }
    const rows = await this.db.select({ id: src.id, username: src.login, active: activeColumn(this.users) }).from(src.table).where(where).limit(1)
    return (rows[0] as UserInfo | undefined) ?? null
  }

  /**
   * Tells every process that a user changed (deactivated or deleted in the app's own table, say):
   * their cached tokens are forgotten at once, here and (through NOTIFY) everywhere else, so the
   * next request checks the user again. Deleting the user deletes their tokens (ON DELETE CASCADE).
   */
  async userChanged (userId: UserId): Promise<void> {
    if (!isUserId(this.users, userId)) throw new UserNotFoundError(userId)
    await this.db.execute(sql`select pg_notify(${this.notifyChannel}, ${USER_CHANGED_PREFIX + String(userId)})`)
    for (const listener of [...this.#userListeners]) listener(userId)
  }

  /**
   * Checks a login name and password. Unknown user, inactive user and wrong password all give null
   * after the same time, whatever the cost of the stored hash (equal-time.ts). On success, for the
   * plugin's own users: updates last_login_at, and rehashes the password when it was hashed with
   * other parameters than the service's.
   * @param context who asks, for the fair share of the password checks (kdf-queue.ts); a client
   *   with too many checks at once gets ClientBusyError, too many waiting in all KdfBusyError.
   */
  async verifyCredentials (username: string, password: string, context: CredentialsContext = {}): Promise<ServiceUser | null> {
    const src = this.users
    const job: KdfJobOptions = { clients: context.clients, trusted: context.trusted }
    let name: string
    try {
      name = src.normalizeLogin(username)
    } catch {
      await this.#dummyCheck(password, job)
      return null
    }
    const rows = await this.db.select({
      id: src.id, username: src.login, passwordHash: src.passwordHash, active: activeColumn(this.users)
    }).from(src.table).where(eq(src.login, name)).limit(1)
    const row = rows[0] as { id: UserId, username: string, passwordHash: string, active: boolean } | undefined
    if (row === undefined) {
      await this.#dummyCheck(password, job)
      return null
    }
    const { result: ok, ms, cost: checked } = await this.#check(job, () => src.verifyPassword(password, row.passwordHash), row.passwordHash)
    if (!ok || !row.active) {
      await this.#padFailure(checked, ms)
      return null
    }
    const hash = src.kind === 'builtin' ? await this.#afterBuiltinLogin(row.id as number, row.passwordHash, password) : row.passwordHash
    const user: ServiceUser = { id: row.id, username: row.username }
    this.#verified.set(user, hash)
    return user
  }

  // ---- tokens --------------------------------------------------------------------------------

  /**
   * Issues a new token for an active user. Only its SHA-256 is stored; the plain token is in the
   * answer, once.
   * @throws UserNotFoundError, UserInactiveError, InvalidTokenOptionsError
   */
  async issueToken (user: UserRef, options: IssueTokenOptions = {}): Promise<IssuedToken> {
    const name = checkName(options.name)
    const scopes = checkScopes(options.scopes)
    let expiresIn = this.#lifetime(checkExpiresIn(options.expiresIn))
    const parentId = options.parentTokenId
    if (parentId !== undefined && !Number.isSafeInteger(parentId)) throw new InvalidTokenOptionsError('parentTokenId must be a token id')
    const verifiedHash = options.credentials === undefined ? undefined : this.#verified.get(options.credentials)
    if (options.credentials !== undefined && verifiedHash === undefined) throw new InvalidTokenOptionsError('credentials must be an answer of this service\'s verifyCredentials')
    const where = this.#userWhere(user)
    if (where === undefined) throw new UserNotFoundError(describeRef(user))
    const src = this.users
    const tokens = this.#tokens
    const token = generateToken(this.prefix)
    const limit = this.#o.maxTokensPerUser
    const { row, userId, replaced, capped } = await this.db.transaction(async (tx) => {
      // Revocations of the user's tokens lock the user's row FOR UPDATE: this lock makes them wait
      // for this insert (and then delete the token too), or makes this wait for them (and then see
      // what they changed). With a limit, FOR UPDATE also makes the tokens of one user be issued one
      // at a time, so the count holds.
      const found = await tx.select({ id: src.id, active: activeColumn(this.users), passwordHash: src.passwordHash }).from(src.table).where(where).limit(1)
        .for(limit === false ? 'share' : 'update')
      if (found.length === 0) throw new UserNotFoundError(describeRef(user))
      if (found[0].active !== true) throw new UserInactiveError(describeRef(user))
      const userId = found[0].id as UserId
      if (verifiedHash !== undefined && found[0].passwordHash !== verifiedHash) throw new CredentialsChangedError(describeRef(user))
      let cap: Date | null = null
      if (parentId !== undefined) {
        const parent = await tx.select({ expiresAt: tokens.expiresAt })
          .from(tokens).where(and(eq(tokens.id, parentId), liveToken(tokens, userId))).limit(1).for('share')
        if (parent.length === 0) throw new ParentTokenGoneError(parentId)
        cap = parent[0].expiresAt
      }
      let replaced: string[] = []
      if (limit !== false) replaced = await this.#makeRoom(tx, userId, limit, describeRef(user), parentId)
      const asked = expiresIn === null ? null : sql`now() + make_interval(secs => ${expiresIn})`
      const inserted = await tx.insert(tokens).values({
        userId: userId as never,
        tokenHash: hashToken(token),
        hint: tokenHint(token),
        name,
        scopes,
        // A child never outlives its parent.
        expiresAt: cap === null ? asked : asked === null ? cap : sql`least(${asked}, ${cap.toISOString()}::timestamptz)`
      }).returning({ id: tokens.id, expiresAt: tokens.expiresAt, now: sql<Date>`now()`.mapWith((v: unknown) => new Date(v as string)) })
      return { row: inserted[0], userId, replaced, capped: cap !== null }
    })
    // Capped at the parent's expiry: the lifetime it got (the same as asked when the cap was later).
    if (capped && row.expiresAt !== null) expiresIn = Math.max(0, Math.round((row.expiresAt.getTime() - row.now.getTime()) / 1000))
    this.#emit(replaced)
    this.metrics.tokens.issued++
    this.events.emit('token.issued', { userId: String(userId), tokenId: row.id, detail: { name, scopes, expiresAt: row.expiresAt?.toISOString() ?? null } })
    return { token, id: row.id, name, scopes, expiresAt: row.expiresAt, expiresIn }
  }

  /** At the token limit: refuse, or revoke the oldest (inside the issuing transaction); the revoked hashes. */
  async #makeRoom (tx: Tx, userId: UserId, limit: number, ref: string | number, keep?: number): Promise<string[]> {
    const tokens = this.#tokens
    const live = liveToken(tokens, userId)
    const [{ n }] = await tx.select({ n: sql<number>`count(*)::int`.mapWith(Number) }).from(tokens).where(live)
    if (n < limit) return []
    // The token asking (`keep`) is never the one revoked to make room; when it is all there is to revoke, refuse.
    if (this.#o.onTokenLimit === 'refuse' || (keep !== undefined && limit === 1)) throw new TokenLimitError(ref, limit)
    const oldest = tx.select({ id: tokens.id }).from(tokens).where(keep === undefined ? live : and(live, ne(tokens.id, keep))).orderBy(tokens.id).limit(n - limit + 1)
    const deleted = await tx.delete(tokens).where(inArray(tokens.id, oldest)).returning({ id: tokens.id, tokenHash: tokens.tokenHash })
    await this.#notify(tx, deleted.map((d) => d.tokenHash))
    this.metrics.tokens.revoked += deleted.length
    for (const d of deleted) this.events.emit('token.revoked', { userId: String(userId), tokenId: d.id, detail: { why: 'token limit' } })
    return deleted.map((d) => d.tokenHash)
  }

  /** The lifetime a new token gets: the one asked for, within maxTokenLifetime (its default). */
  #lifetime (expiresIn: number | null): number | null {
    const max = this.#o.maxTokenLifetime
    if (max === null) return expiresIn
    if (expiresIn === null) return max
    if (expiresIn > max) throw new InvalidTokenOptionsError(`expiresIn must be at most ${max} seconds (the server's maximum token lifetime)`)
    return expiresIn
  }

  /**
   * A user's tokens, oldest first, without secrets.
   * @throws UserNotFoundError
   */
  async listTokens (user: UserRef): Promise<TokenInfo[]> {
    const id = await this.#resolveId(user)
    const tokens = this.#tokens
    return await this.db.select({
      id: tokens.id,
      name: tokens.name,
      hint: tokens.hint,
      scopes: tokens.scopes,
      createdAt: tokens.createdAt,
      lastUsedAt: tokens.lastUsedAt,
      expiresAt: tokens.expiresAt
    }).from(tokens).where(eq(tokens.userId, id as never)).orderBy(tokens.id)
  }

  /**
   * Revokes (deletes) one token by id; with `userId`, only if it belongs to that user.
   * Resolves to false when there was no such token.
   */
  async revokeToken (id: number, options: { userId?: UserId } = {}): Promise<boolean> {
    const tokens = this.#tokens
    if (!Number.isSafeInteger(id)) return false
    if (options.userId !== undefined && !isUserId(this.users, options.userId)) return false
    const where = options.userId === undefined ? eq(tokens.id, id) : and(eq(tokens.id, id), eq(tokens.userId, options.userId as never))
    return (await this.#revokeWhere(where)) > 0
  }

  /** Revokes (deletes) the token with this SHA-256 hex hash (see hashToken). */
  async revokeTokenByHash (tokenHash: string): Promise<boolean> {
    return (await this.#revokeWhere(eq(this.#tokens.tokenHash, tokenHash))) > 0
  }

  /**
   * Revokes (deletes) every token of a user, or every one but `except` (a token id); resolves to the
   * count (0 for an unknown user).
   */
  async revokeAllTokens (user: UserRef, options: { except?: number } = {}): Promise<number> {
    const where = this.#userWhere(user)
    if (where === undefined) return 0
    const tokens = this.#tokens
    const src = this.users
    const but = options.except === undefined ? undefined : ne(tokens.id, options.except)
    return await this.#revokeWhere(async (tx) => {
      // The user's row locked FOR UPDATE, as issueToken locks it: a token issued at the same time is
      // either committed before this delete (and deleted by it) or checked after it (see issueToken).
      const found = await tx.select({ id: src.id }).from(src.table).where(where).for('update')
      if (found.length === 0) return null
      return and(inArray(tokens.userId, found.map((f) => f.id as never)), but)
    })
  }

  /**
   * The latest events in token_auth_events (written with `events.table`), newest first; of one user
   * (their id as text) with `userId`. Pending events of this service are written first.
   */
  async listEvents (options: { userId?: string, limit?: number } = {}): Promise<StoredEvent[]> {
    await this.events.flush()
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 10_000)
    const where = options.userId === undefined ? undefined : eq(eventsTable.userId, options.userId)
    const rows = await this.db.select().from(eventsTable).where(where).orderBy(desc(eventsTable.id)).limit(limit)
    return rows as StoredEvent[]
  }

  /** Deletes expired tokens (expires_at <= now()), in batches; resolves to the count. */
  async pruneExpired (): Promise<number> {
    const tokens = this.#tokens
    let total = 0
    for (;;) {
      const batch = this.db.select({ id: tokens.id }).from(tokens).where(lte(tokens.expiresAt, sql`now()`)).limit(PRUNE_BATCH)
      const n = await this.#revokeWhere(inArray(tokens.id, batch), 'token.expired')
      total += n
      if (n < PRUNE_BATCH) break
    }
    this.metrics.tokens.pruned += total
    if (total > 0) this.events.emit('tokens.pruned', { detail: { count: total } })
    return total
  }

  /**
   * Sets last_used_at = now() for these token ids (for the provider's batched, off-request-path
   * updates; deleted ids are ignored).
   */
  async touchTokens (ids: readonly number[]): Promise<void> {
    const tokens = this.#tokens
    const slide = this.#o.slidingExpiry
    const max = this.#o.maxTokenLifetime
    // Sliding expiry: never shorter, never past creation + the maximum lifetime; a token that never
    // expires stays so.
    const cap = max === null ? sql`now() + make_interval(secs => ${slide})` : sql`least(now() + make_interval(secs => ${slide}), ${tokens.createdAt} + make_interval(secs => ${max}))`
    const set = slide === false
      ? { lastUsedAt: sql`now()` }
      : { lastUsedAt: sql`now()`, expiresAt: sql`case when ${tokens.expiresAt} is null then null else greatest(${tokens.expiresAt}, ${cap}) end` }
    for (let i = 0; i < ids.length; i += TOUCH_BATCH) {
      await this.db.update(tokens).set(set).where(inArray(tokens.id, ids.slice(i, i + TOUCH_BATCH)))
    }
  }

  /** The expiry a use at `now` moves a token's to (ms), as touchTokens writes it; null: no sliding. */
  slidExpiry (expiresAt: number | null, createdAt: number, now: number): number | null {
    const slide = this.#o.slidingExpiry
    if (slide === false || expiresAt === null) return expiresAt
    const max = this.#o.maxTokenLifetime
    const cap = max === null ? now + slide * 1000 : Math.min(now + slide * 1000, createdAt + max * 1000)
    return Math.max(expiresAt, cap)
  }

  // ---- internals -----------------------------------------------------------------------------

  #builtinOnly (method: string): void {
    if (this.users.kind !== 'builtin') throw new UsersOwnedByAppError(method)
  }

  /** The condition selecting the user, or undefined when `user` cannot name one (no query needed). */
  #userWhere (user: UserRef): SQL | undefined {
    const src = this.users
    if (typeof user === 'object' && user !== null && 'id' in user) return isUserId(src, user.id) ? eq(src.id, user.id) : undefined
    if (typeof user === 'number') return isUserId(src, user) ? eq(src.id, user) : undefined
    const name = typeof user === 'object' && user !== null ? user.username : user
    return eq(src.login, src.normalizeLogin(name))
  }

  async #resolveId (user: UserRef): Promise<UserId> {
    const where = this.#userWhere(user)
    const src = this.users
    const found = where === undefined ? [] : await this.db.select({ id: src.id }).from(src.table).where(where).limit(1)
    if (found.length === 0) throw new UserNotFoundError(describeRef(user))
    return found[0].id as UserId
  }

  /**
   * The work of a password check for a user who does not exist, at the costliest cost in use: for the
   * plugin's own users a scrypt derivation with those parameters; for the app's, its function against
   * one of its hashes (the answer thrown away). Then padded like a failure.
   */
  async #dummyCheck (password: string, job: KdfJobOptions): Promise<void> {
    if (this.users.kind === 'builtin') {
      const params = await this.#costliestParams()
      const { ms, cost: checked } = await this.#check(job, () => dummyVerify(password, params), undefined, params)
      await this.#padFailure(checked, ms)
      return
    }
    const hash = this.#dummyHash ?? await this.#readDummyHash()
    if (hash === undefined) return // no user at all: there is nobody to tell apart
    const { ms, cost: checked } = await this.#check(job, () => this.users.verifyPassword(password, hash), hash)
    await this.#padFailure(checked, ms)
  }

  /** Runs one check in a password slot and times it (queueing excluded), under its cost's key. */
  async #check<T> (job: KdfJobOptions, work: () => Promise<T>, hash: string | undefined, params?: PasswordParams): Promise<{ result: T, ms: number, cost: CheckCost }> {
    const checked = this.#costOf(hash, params)
    return await this.#kdf.run(async () => {
      const start = performance.now()
      const result = await work()
      const ms = performance.now() - start
      this.#equalTime.record(checked.key, ms)
      return { result, ms, cost: checked }
    }, job)
  }

  /** The key checks are timed under (scrypt parameters for the plugin's users; one key for the app's) and their N·r·p. */
  #costOf (hash: string | undefined, params?: PasswordParams): CheckCost {
    if (this.users.kind !== 'builtin') return { key: 'app', cost: 0 }
    const p = params ?? (hash === undefined ? undefined : parseParams(hash)) ?? this.passwordParams
    return { key: `ln=${p.ln},r=${p.r},p=${p.p}`, cost: cost(p) }
  }

  /** A failure answers no sooner than a check at the costliest cost (the app's: most of its checks). */
  async #padFailure (checked: CheckCost, ms: number): Promise<void> {
    if (this.users.kind !== 'builtin') return await this.#equalTime.pad('app', ms, 0.9)
    const top = this.#costOf(undefined, await this.#costliestParams())
    if (checked.key === top.key) return
    await this.#equalTime.padToward(checked.key, ms, top.key, top.cost / checked.cost)
  }

  /** The costliest scrypt parameters among the stored hashes and the service's (read every 10 minutes). */
  async #costliestParams (): Promise<PasswordParams> {
    const now = Date.now()
    if (this.#costliest !== undefined && now - this.#costliest.readAt < 600_000) return this.#costliest.params
    let params = this.passwordParams
    const rows = await this.db.selectDistinct({ params: sql<string>`split_part(${users.passwordHash}, '$', 2)` }).from(users)
    for (const { params: text } of rows) {
      const p = parseParams(`scrypt$${text}$`)
      if (p !== undefined && cost(p) > cost(params)) params = p
    }
    this.#costliest = { params, readAt: now }
    return params
  }

  async #readDummyHash (): Promise<string | undefined> {
    const src = this.users
    const rows = await this.db.select({ hash: src.passwordHash }).from(src.table).limit(1)
    const hash = rows[0]?.hash
    if (typeof hash === 'string' && hash !== '') this.#dummyHash = hash
    return this.#dummyHash
  }

  /** Resolves to the user's hash afterwards (the new one when it was rehashed). */
  async #afterBuiltinLogin (id: number, stored: string, password: string): Promise<string> {
    const set: { lastLoginAt: SQL, passwordHash?: SQL } = { lastLoginAt: sql`now()` }
    let fresh: string | undefined
    if (needsRehash(stored, this.passwordParams)) {
      fresh = await this.#kdf.run(() => hashPassword(password, this.passwordParams), APP_WORK)
      // Only if the hash was not changed meanwhile (a concurrent setPassword wins).
      set.passwordHash = sql`case when ${users.passwordHash} = ${stored} then ${fresh} else ${users.passwordHash} end`
    }
    const rows = await this.db.update(users).set(set).where(eq(users.id, id)).returning({ passwordHash: users.passwordHash })
    // The hash checked, or the one it was just replaced with; never one another change wrote meanwhile.
    return fresh !== undefined && rows[0]?.passwordHash === fresh ? fresh : stored
  }

  /** Deletes the tokens `where` selects (or, given a function, what it selects inside the transaction; null: none). */
  async #revokeWhere (where: SQL | undefined | ((tx: Tx) => Promise<SQL | undefined | null>), event: TokenAuthEventType = 'token.revoked'): Promise<number> {
    const tokens = this.#tokens
    const deleted = await this.db.transaction(async (tx) => {
      const condition = typeof where === 'function' ? await where(tx) : where
      if (condition === null) return []
      const deleted = await tx.delete(tokens).where(condition).returning({ id: tokens.id, userId: tokens.userId, tokenHash: tokens.tokenHash })
      await this.#notify(tx, deleted.map((r) => r.tokenHash))
      return deleted
    })
    if (event === 'token.revoked') this.metrics.tokens.revoked += deleted.length
    for (const d of deleted) this.events.emit(event, { userId: String(d.userId), tokenId: d.id })
    this.#emit(deleted.map((r) => r.tokenHash))
    return deleted.length
  }

  async #notify (tx: Executor, hashes: readonly string[]): Promise<void> {
    if (hashes.length > 0) await tx.execute(notifyStatement(this.notifyChannel, hashes))
  }

  #emit (hashes: string[]): void {
    if (hashes.length === 0 || this.#revokeListeners.size === 0) return
    const errors: unknown[] = []
    for (const listener of [...this.#revokeListeners]) {
      try {
        listener(hashes)
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) {
      throw new AggregateError(errors, 'fastify-token-auth: the tokens were revoked, but an onRevoke listener threw')
    }
  }
}

/** The app's own work (creating users, setting passwords): it waits its turn, never refused. */
const APP_WORK: KdfJobOptions = { refusable: false }

const cost = (p: PasswordParams): number => 2 ** p.ln * p.r * p.p

/** What a password check is timed under (equal-time.ts) and its cost. */
interface CheckCost { key: string, cost: number }

/** The user's tokens that have not expired (by the database's clock). */
function liveToken (tokens: TokensTable, userId: UserId): SQL | undefined {
  return and(eq(tokens.userId, userId as never), or(isNull(tokens.expiresAt), gt(tokens.expiresAt, sql`now()`)))
}

/** Writes events into token_auth_events (the service's `events.table`). */
function eventsTableSink (db: TokenAuthDatabase) {
  return async (batch: ReadonlyArray<{ type: string, at: Date, userId?: string, tokenId?: number, ip?: string, detail?: Record<string, unknown> }>): Promise<void> => {
    await db.insert(eventsTable).values(batch.map((e) => ({
      type: e.type, at: e.at, userId: e.userId ?? null, tokenId: e.tokenId ?? null, ip: e.ip ?? null, detail: e.detail ?? {}
    })))
  }
}

function describeRef (user: UserRef): string | number {
  if (typeof user === 'object' && user !== null) return 'id' in user ? user.id : user.username
  return user
}

function checkName (name: string | undefined): string {
  if (name === undefined) return ''
  if (typeof name !== 'string') throw new InvalidTokenOptionsError('token name must be a string')
  if (name.length > TOKEN_NAME_MAX_LENGTH) throw new InvalidTokenOptionsError(`token name must be at most ${TOKEN_NAME_MAX_LENGTH} characters long`)
  if (CONTROL_CHARS.test(name)) throw new InvalidTokenOptionsError('token name must not contain control, format (bidi, zero-width) or unassigned characters')
  return name
}

function checkScopes (scopes: readonly string[] | undefined): string[] {
  if (scopes === undefined) return []
  if (!Array.isArray(scopes)) throw new InvalidTokenOptionsError('scopes must be an array of strings')
  const out = [...new Set(scopes)]
  if (out.length > MAX_SCOPES) throw new InvalidTokenOptionsError(`at most ${MAX_SCOPES} scopes`)
  for (const s of out) {
    if (!isScopeToken(s)) {
      throw new InvalidTokenOptionsError(`invalid scope ${JSON.stringify(s)}: 1 to ${SCOPE_MAX_LENGTH} printable ASCII characters, no space, " or \\`)
    }
  }
  return out
}

function checkExpiresIn (expiresIn: number | null | undefined): number | null {
  if (expiresIn === undefined || expiresIn === null) return null
  if (!Number.isSafeInteger(expiresIn) || expiresIn <= 0 || expiresIn > MAX_EXPIRES_IN) {
    throw new InvalidTokenOptionsError(`expiresIn must be a whole number of seconds from 1 to ${MAX_EXPIRES_IN}`)
  }
  return expiresIn
}
