import { eq, sql } from 'drizzle-orm'
import { TokenAuthUnavailableError } from '../errors.js'
import type { TokenAuthDatabase, ListenFn } from '../store/database.js'
import { PartialReadError, ReplicaSet } from '../store/replicas.js'
import { channelOption, prefixOption, TokenService, USER_CHANGED_PREFIX } from '../store/service.js'
import { withTimeout } from '../timeout.js'
import { checkTokenFormat, tokenLength } from '../store/token-format.js'
import { digestKey, hexToKey, keyToHex, sha256Ascii } from '../sha256.js'
import type { Metrics } from '../metrics.js'
import { ms, object, optional, optionError, orFalse, satisfies } from '../validate.js'
import { activeColumn, type UserId, type UserSource } from '../users/user-source.js'
import type { TokenAuthProvider, TokenAuthUser } from './provider.js'
import { LookupBatch } from './lookup-batch.js'
import { cacheOptions, TokenCache, type CachedToken, type TokenCacheOptions } from './token-cache.js'

export interface DrizzleTokenAuthProviderOptions {
  /** A Drizzle database on postgres.js or PGlite, migrated. */
  db: TokenAuthDatabase
  /** LISTEN for revocations made by other processes (createDatabase's `listen`). Without it, a token
   * revoked elsewhere is trusted until its cache entry's TTL runs out. */
  listen?: ListenFn
  /** The app's TokenService: its revocations drop cache entries before they return, and it writes
   * `last_used_at`. Default: a service of its own on `db` (then only NOTIFY tells of revocations). */
  service?: TokenService
  /** The token prefix (default: the service's, `tat`): other tokens are refused without a query. */
  prefix?: string
  /** Cache settings, or `false` for a query per request. */
  cache?: TokenCacheOptions | false
  /** Write `last_used_at` at most once per token per this many ms, batched off the request path.
   * Default 300,000 (5 minutes); `false` never writes it. */
  lastUsedInterval?: number | false
  /** The NOTIFY channel revocations are published on. Default: the service's (`token_auth_revoked`). */
  notifyChannel?: string
  /** A lookup that takes longer than this (ms) is answered "unavailable". Default 5,000. */
  queryTimeout?: number
  /** Read replicas (createDatabase()'s `replicas`): lookups are read there, every answer but a yes
   * is asked again of `db`, and tokens revoked lately are read from `db` only. */
  replicas?: ReplicaSet
}

/** The options the plugin's `drizzle` object takes (the others come from the plugin's store). */
export const DRIZZLE_OPTIONS = {
  cache: cacheOptions,
  lastUsedInterval: orFalse(ms(300_000)),
  queryTimeout: ms(5_000)
}

const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null
const providerOptions = object({
  ...DRIZZLE_OPTIONS,
  db: satisfies<TokenAuthDatabase>(isObject, 'a Drizzle database (createDatabase()\'s `db`)'),
  listen: optional(satisfies<ListenFn>((v) => typeof v === 'function', 'a function (createDatabase()\'s `listen`)')),
  service: optional(satisfies<TokenService>((v) => v instanceof TokenService, 'a TokenService')),
  prefix: optional(prefixOption),
  notifyChannel: optional(channelOption),
  replicas: optional(satisfies<ReplicaSet>((v) => v instanceof ReplicaSet, 'a ReplicaSet (createDatabase()\'s `replicas`)'))
})

/** Tokens in one lookup query at most, and lookup queries out at once at most (lookup-batch.ts). */
const MAX_BATCH = 256
const MAX_INFLIGHT = 4
/** Tokens waiting for a lookup query at most; past that, a cold lookup is "unavailable" at once. */
const MAX_WAITING = 10_000

function lookupQuery (db: TokenAuthDatabase, source: UserSource) {
  const tokens = source.tokens
  // The token, its user's `request.user` columns and whether the user is active; token_hash is unique.
  return db.select({
    tokenHash: tokens.tokenHash,
    tokenId: tokens.id,
    userId: tokens.userId,
    scopes: tokens.scopes,
    expiresAt: tokens.expiresAt,
    lastUsedAt: tokens.lastUsedAt,
    createdAt: tokens.createdAt,
    active: activeColumn(source),
    user: source.user
  }).from(tokens)
    .innerJoin(source.table, eq(source.id, tokens.userId))
}

/** Two prepared, indexed queries: one token (`= $1`), and several at once (`= ANY($1)`). */
function buildLookup (db: TokenAuthDatabase, source: UserSource) {
  const one = lookupQuery(db, source).where(eq(source.tokens.tokenHash, sql.placeholder('hash'))).limit(1).prepare('token_auth_lookup')
  const many = lookupQuery(db, source).where(sql`${source.tokens.tokenHash} = any(${sql.placeholder('hashes')}::text[])`).prepare('token_auth_lookup_many')
  return async (hashes: string[]): Promise<LookupRow[]> =>
    // The array as a literal: the hashes are hex, and drivers serialize array parameters differently.
    hashes.length === 1 ? await one.execute({ hash: hashes[0] }) : await many.execute({ hashes: `{${hashes.join(',')}}` })
}

type LookupRow = Awaited<ReturnType<ReturnType<typeof lookupQuery>['execute']>>[number]

/**
 * Resolves `<prefix>_...` tokens from the `token_auth_tokens` table: checksum first (a bad one never
 * reaches the database), then the cache, then one prepared query. Expired tokens and inactive users
 * are unknown; a database failure is "unavailable" (503), never "unknown". The user is the service's
 * user source's (`request.user`: its columns, `tokenId` and `scopes`).
 */
export class DrizzleTokenAuthProvider implements TokenAuthProvider {
  readonly #service: TokenService
  readonly #db: TokenAuthDatabase
  readonly #replicas: ReplicaSet | undefined
  /** The prepared lookups on each db read from: the primary's, and the replicas'. */
  readonly #lookups = new Map<TokenAuthDatabase, ReturnType<typeof buildLookup>>()
  /** Lookups of different tokens in the same turn share a query. */
  readonly #batch: LookupBatch<LookupRow>
  readonly #prefixes: readonly string[]
  /** The lengths of the tokens of those prefixes. */
  readonly #lengths: ReadonlySet<number>
  readonly #cache: TokenCache
  readonly #lastUsedInterval: number
  readonly #queryTimeout: number
  readonly #sliding: boolean
  readonly #metrics: Metrics['lookups']
  readonly #pendingLastUsed = new Set<number>()
  readonly #inflight = new Map<string, Promise<TokenAuthUser | null>>()
  /** The user objects this provider made: only those came from the store (see `owns`). */
  readonly #made = new WeakSet<object>()
  /** getUser's SHA-256, reused (getUser does not wait before it is done with it). */
  readonly #digest = new Int32Array(8)
  readonly #unsubscribe: Array<() => unknown> = []
  #flushTimer: NodeJS.Timeout | undefined
  #listening: Promise<void> | undefined

  constructor (opts: DrizzleTokenAuthProviderOptions) {
    const options = providerOptions(opts, 'DrizzleTokenAuthProvider')
    this.#service = options.service ?? new TokenService({ db: options.db })
    this.#db = options.db
    this.#replicas = options.replicas
    this.#batch = new LookupBatch((hashes) => this.#query(hashes), { maxBatch: MAX_BATCH, maxInflight: MAX_INFLIGHT, timeout: options.queryTimeout, maxWaiting: MAX_WAITING })
    this.#prefixes = options.prefix === undefined ? this.#service.prefixes : [options.prefix]
    this.#lengths = new Set(this.#prefixes.map(tokenLength))
    this.#cache = new TokenCache(options.cache)
    this.#lastUsedInterval = options.lastUsedInterval === false ? Infinity : options.lastUsedInterval
    this.#queryTimeout = options.queryTimeout
    this.#sliding = this.#service.options.slidingExpiry !== false
    this.#metrics = this.#service.metrics.lookups
    if (this.#sliding && options.lastUsedInterval === false) {
      throw optionError('lastUsedInterval', 'option slidingExpiry needs lastUsedInterval: the expiry moves when last_used_at is written')
    }
    const slide = this.#service.options.slidingExpiry
    if (slide !== false && slide * 1000 <= this.#lastUsedInterval) {
      throw optionError('lastUsedInterval', `option lastUsedInterval (${this.#lastUsedInterval} ms) must be shorter than the service's slidingExpiry (${slide} s), or tokens in use would expire between two moves of their expiry`)
    }

    this.#unsubscribe.push(this.#service.onRevoke((hashes) => this.invalidate(hashes)))
    this.#unsubscribe.push(this.#service.onUserChanged((userId) => this.invalidateUser(userId)))
    // Without a cache, the replicas still need to hear of revocations (reads of them go to the primary).
    if (options.listen !== undefined && (this.#cache.enabled || this.#replicas !== undefined)) {
      const channel = options.notifyChannel ?? this.#service.notifyChannel
      this.#listening = options.listen(
        channel,
        (payload) => {
          if (payload.startsWith(USER_CHANGED_PREFIX)) this.invalidateUser(payload.slice(USER_CHANGED_PREFIX.length))
          else this.invalidate(payload.split(','))
        },
        // Revocations announced while the connection was down were missed: trust nothing cached.
        () => this.clearCache()
      ).then((unlisten) => { this.#unsubscribe.push(unlisten) })
    }
    if (this.#lastUsedInterval !== Infinity) {
      this.#flushTimer = setInterval(() => { this.flushLastUsed().catch(() => {}) }, Math.min(this.#lastUsedInterval, 10_000))
      this.#flushTimer.unref()
    }
  }

  /** Resolves once the LISTEN for revocations is in place (the plugin waits for it on ready). */
  async ready (): Promise<void> {
    await this.#listening
  }

  getUser (token: string): TokenAuthUser | null | Promise<TokenAuthUser | null> {
    // The length first (free); the checksum only when the cache does not hold the token as good:
    // what it holds passed the checksum when it was put there (the key is the token's SHA-256).
    if (typeof token !== 'string' || !this.#lengths.has(token.length)) return null
    // SHA-256 in JavaScript (sha256.ts): node:crypto's costs several times more a call in a loaded
    // server. Not ASCII: not a token of ours (base62), and no hash to ask for.
    const digest = this.#digest
    if (!sha256Ascii(token, digest)) return null
    const key = digestKey(digest)
    const hit = this.#cache.good(key)
    if (hit !== undefined) {
      this.#metrics.cacheHits++
      const now = Date.now()
      if (hit.expiresAt !== null && hit.expiresAt <= now) return null
      this.#touch(hit, now)
      return hit.user
    }
    if (!this.#hasFormat(token)) return null
    if (this.#cache.unknown(key)) {
      this.#metrics.negativeHits++
      return null
    }
    this.#metrics.cacheMisses++
    // Requests for the same token while its lookup is in flight share it (a cold burst is one query).
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      // The hex digest from the key, not from the reused array: nothing between can change the key.
      pending = this.#fetch(keyToHex(key), key)
      this.#inflight.set(key, pending)
      // An invalidation may have replaced this lookup with a newer one meanwhile: leave that one be.
      const settled = pending
      const forget = (): void => { if (this.#inflight.get(key) === settled) this.#inflight.delete(key) }
      settled.then(forget, forget)
    }
    return pending
  }

  /** The lookup of the token whose SHA-256 is `hash` (hex, as stored) and cache key is `key`. */
  async #fetch (hash: string, key: string): Promise<TokenAuthUser | null> {
    const epoch = this.#cache.epoch
    try {
      // The wait for a place in a query counts against the timeout too.
      const row = await withTimeout(this.#batch.get(hash), this.#queryTimeout,
        () => new TokenAuthUnavailableError(`token lookup took over ${this.#queryTimeout} ms`))
      const now = Date.now()
      if (row === undefined || !row.active || (row.expiresAt !== null && row.expiresAt.getTime() <= now)) {
        // An inactive user's token is remembered with the user, so that userChanged() forgets it too.
        if (epoch === this.#cache.epoch) this.#cache.setUnknown(key, row === undefined || row.active ? '' : String(row.userId))
        return null
      }
      const user = Object.freeze({ ...row.user, tokenId: row.tokenId, scopes: Object.freeze(row.scopes) })
      this.#made.add(user)
      const entry: CachedToken = {
        user: user as unknown as TokenAuthUser,
        userKey: String(row.userId),
        tokenId: row.tokenId,
        expiresAt: row.expiresAt === null ? null : row.expiresAt.getTime(),
        lastUsedAt: row.lastUsedAt === null ? 0 : row.lastUsedAt.getTime(),
        createdAt: row.createdAt.getTime()
      }
      // A revocation that landed while we were asking may concern this very token: don't keep it.
      if (epoch === this.#cache.epoch) this.#cache.set(key, entry, now)
      this.#touch(entry, now)
      return entry.user
    } catch (err) {
      throw err instanceof TokenAuthUnavailableError ? err : new TokenAuthUnavailableError('token lookup failed', { cause: err })
    }
  }

  /** One query for these hashes (on a replica when there are some); the rows by hash. */
  async #query (hashes: string[]): Promise<Map<string, LookupRow | Error>> {
    this.#metrics.queries++
    if (hashes.length > 1) this.#metrics.batches++
    let rows: LookupRow[]
    let failed: Error | undefined
    try {
      rows = this.#replicas === undefined ? await this.#lookupOn(this.#db)(hashes) : await this.#readReplica(hashes)
    } catch (err) {
      // The primary failed after a replica had confirmed some: those are answered, the rest fail.
      if (!(err instanceof PartialReadError)) throw err
      rows = err.rows as LookupRow[]
      failed = err
    }
    const byHash = new Map<string, LookupRow | Error>()
    for (const row of rows) byHash.set(row.tokenHash, row)
    if (failed !== undefined) for (const hash of hashes) if (!byHash.has(hash)) byHash.set(hash, failed)
    return byHash
  }

  #lookupOn (db: TokenAuthDatabase): ReturnType<typeof buildLookup> {
    let lookup = this.#lookups.get(db)
    if (lookup === undefined) this.#lookups.set(db, lookup = buildLookup(db, this.#service.users))
    return lookup
  }

  /** The lookup on a replica; only a yes is taken from it (a token just issued may not be there yet). */
  async #readReplica (hashes: string[]): Promise<LookupRow[]> {
    const replicas = this.#replicas!
    return await replicas.readEach(hashes, (db, keys) => this.#lookupOn(db)(keys), (row) => row.tokenHash, (row) =>
      row.active && (row.expiresAt === null || row.expiresAt.getTime() > Date.now()) && !replicas.changedLately(`user:${String(row.userId)}`),
    this.#metrics)
  }

  #touch (entry: CachedToken, now: number): void {
    if (now - entry.lastUsedAt < this.#lastUsedInterval) return
    entry.lastUsedAt = now
    if (this.#sliding && entry.expiresAt !== null) {
      // The expiry moves forward here at once (and in the database with the next flush). The cache
      // entry is not set again: its time to live (how stale it may be) is not renewed by use.
      entry.expiresAt = this.#service.slidExpiry(entry.expiresAt, entry.createdAt, now)
    }
    if (this.#pendingLastUsed.size < 100_000) this.#pendingLastUsed.add(entry.tokenId)
  }

  /** Writes the pending `last_used_at` updates in one statement. Called by a timer and on close. */
  async flushLastUsed (): Promise<number> {
    if (this.#pendingLastUsed.size === 0) return 0
    const ids = [...this.#pendingLastUsed]
    this.#pendingLastUsed.clear()
    try {
      await this.#service.touchTokens(ids)
    } catch (err) {
      // The database is away: keep them for the next round rather than lose them.
      for (const id of ids) if (this.#pendingLastUsed.size < 100_000) this.#pendingLastUsed.add(id)
      throw err
    }
    return ids.length
  }

  /** True when `user` is one this provider resolved (from the store), not another provider's. */
  owns (user: unknown): user is TokenAuthUser & { id: UserId, tokenId: number } {
    return typeof user === 'object' && user !== null && this.#made.has(user)
  }

  /** Forget every cached token of this user (userChanged in this process, or a NOTIFY from another). */
  invalidateUser (userId: UserId): void {
    this.#replicas?.changed([`user:${String(userId)}`])
    this.#cache.invalidateUser(String(userId))
    this.#inflight.clear()
  }

  /** The token has one of the accepted prefixes and a good checksum (no query for anything else). */
  #hasFormat (token: string): boolean {
    const prefixes = this.#prefixes
    if (prefixes.length === 1) return checkTokenFormat(token, prefixes[0])
    for (const prefix of prefixes) if (checkTokenFormat(token, prefix)) return true
    return false
  }

  /** Forget these token hashes at once (revocation in this process, or a NOTIFY from another). */
  invalidate (hashes: Iterable<string>): void {
    const list = [...hashes]
    this.#replicas?.changed(list)
    this.#cache.invalidate(list.map(hexToKey))
    this.#inflight.clear()
  }

  /** Forget every cached answer. */
  clearCache (): void {
    this.#replicas?.primaryOnly()
    this.#cache.clear()
    this.#inflight.clear()
  }

  async close (): Promise<void> {
    clearInterval(this.#flushTimer)
    await this.#listening?.catch(() => {})
    // The database may already be gone (closed by its owner, or down): closing must still finish.
    for (const unsubscribe of this.#unsubscribe.splice(0)) {
      try { await unsubscribe() } catch {}
    }
    await this.flushLastUsed().catch(() => {})
  }
}
