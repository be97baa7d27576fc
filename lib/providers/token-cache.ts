import { LRUCache } from 'lru-cache'
import { integer, ms, object, orFalse, type Checked } from '../validate.js'
import type { TokenAuthUser } from './provider.js'

export interface TokenCacheOptions {
  /** Most tokens kept. Default 10,000. */
  max?: number
  /** How long a good token is trusted without asking the database, in ms. Default 60,000. */
  ttl?: number
  /** How long an unknown token is remembered as unknown, in ms (0: never). Default 5,000. */
  negativeTtl?: number
  /** Most unknown tokens remembered. Default 10,000. */
  negativeMax?: number
}

/** The cache options' check (`false`: no cache). Sizes up to 10 million entries; times a timer can hold. */
export const cacheOptions = orFalse(object({
  max: integer({ min: 0, max: 10_000_000, default: 10_000 }),
  ttl: ms(60_000, 0),
  negativeTtl: ms(5_000, 0),
  negativeMax: integer({ min: 0, max: 10_000_000, default: 10_000 })
}))
export type ResolvedCacheOptions = Checked<typeof cacheOptions>

export interface CachedToken {
  user: TokenAuthUser
  /** The user's id as a string, to forget all of a user's tokens at once. */
  userKey: string
  tokenId: number
  /** ms since epoch, or null: never expires. */
  expiresAt: number | null
  /** ms since epoch, when the token was made (the cap of a sliding expiry). */
  createdAt: number
  /** ms since epoch of the last `last_used_at` write we know of (0: never). */
  lastUsedAt: number
}

/**
 * Good and unknown tokens by their digest's key (sha256.ts `digestKey`: the token's SHA-256 as 16
 * characters; never the token itself). `epoch` moves on every invalidation, so a lookup that was in flight
 * while a token was revoked can tell that its answer may be stale and must not be cached.
 */
export class TokenCache {
  readonly #good: LRUCache<string, CachedToken> | undefined
  /** Unknown tokens; the value is the user's id when the token exists but its user may not use it. */
  readonly #unknown: LRUCache<string, string> | undefined
  readonly #ttl: number
  epoch = 0

  /** @param options resolved by `cacheOptions` */
  constructor (options: ResolvedCacheOptions) {
    if (options === false) {
      this.#ttl = 0
      return
    }
    const { max, ttl, negativeTtl, negativeMax } = options
    this.#ttl = ttl
    if (max > 0 && ttl > 0) this.#good = new LRUCache({ max, ttl, ttlAutopurge: false })
    if (negativeMax > 0 && negativeTtl > 0) this.#unknown = new LRUCache({ max: negativeMax, ttl: negativeTtl })
  }

  /** The cached good token, or undefined. */
  good (key: string): CachedToken | undefined {
    return this.#good?.get(key)
  }

  /** True when the token is remembered as unknown. */
  unknown (key: string): boolean {
    return this.#unknown?.get(key) !== undefined
  }

  set (key: string, entry: CachedToken, now: number): void {
    if (this.#good === undefined) return
    // Never trust an entry past its token's own expiry.
    const ttl = entry.expiresAt === null ? this.#ttl : Math.min(this.#ttl, entry.expiresAt - now)
    if (ttl > 0) this.#good.set(key, entry, { ttl })
  }

  /** Remembers a token as unknown; `userKey`: it exists, but its user (this id) is inactive. */
  setUnknown (key: string, userKey = ''): void {
    this.#unknown?.set(key, userKey)
  }

  invalidate (keys: Iterable<string>): void {
    this.epoch++
    for (const key of keys) {
      this.#good?.delete(key)
      this.#unknown?.delete(key)
    }
  }

  /** Forgets every good token of the user with this id (as a string). */
  invalidateUser (userKey: string): void {
    this.epoch++
    if (this.#good !== undefined) {
      for (const [key, entry] of this.#good.entries()) if (entry.userKey === userKey) this.#good.delete(key)
    }
    // An inactive user's tokens too: the user may be active again.
    if (this.#unknown !== undefined) {
      for (const [key, user] of this.#unknown.entries()) if (user === userKey) this.#unknown.delete(key)
    }
  }

  clear (): void {
    this.epoch++
    this.#good?.clear()
    this.#unknown?.clear()
  }

  get enabled (): boolean {
    return this.#good !== undefined
  }
}
