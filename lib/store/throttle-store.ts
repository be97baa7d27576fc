/**
 * Where the login throttle keeps its counters. By default the database's `token_auth_throttle` table:
 * every process on the database shares the counts, a restart keeps them, nothing is evicted, and an
 * increment is one upsert (no read-modify-write race). Any store of @fastify/rate-limit (its
 * RedisStore, say) can be used instead, through `rateLimitStore()`.
 */
import { and, gt, inArray, lt, sql } from 'drizzle-orm'
import type { TokenAuthDatabase } from './database.js'
import { throttle } from './schema.js'

/** A key's failures in its current window, and the ms until the window ends. */
export interface Counter { count: number, resetMs: number }
/** A key and the length of its window, in ms. */
export interface Keyed { key: string, windowMs: number }

export interface ThrottleStore {
  /** The live counters of these keys (a key without one is absent); each with its window. */
  read: (keys: readonly Keyed[]) => Promise<Map<string, Counter>>
  /** Adds one to each key; a key's window (`windowMs`) starts at its first count. */
  hit: (keys: readonly string[], windowMs: number) => Promise<void>
  /** Deletes the counters whose window ended (the maintenance job calls it). */
  sweep?: () => Promise<number>
}

export function databaseThrottleStore (db: TokenAuthDatabase): ThrottleStore {
  return {
    async read (entries) {
      const out = new Map<string, Counter>()
      if (entries.length === 0) return out
      const keys = entries.map((e) => e.key)
      const rows = await db.select({
        key: throttle.key,
        count: throttle.count,
        resetMs: sql<number>`greatest(0, ceil(extract(epoch from (${throttle.resetAt} - now())) * 1000))::float8`.mapWith(Number)
      }).from(throttle).where(and(inArray(throttle.key, keys), gt(throttle.resetAt, sql`now()`)))
      for (const r of rows) out.set(r.key, { count: r.count, resetMs: r.resetMs })
      return out
    },
    async hit (keys, windowMs) {
      const unique = [...new Set(keys)]
      if (unique.length === 0) return
      const resetAt = sql`now() + make_interval(secs => ${windowMs / 1000})`
      await db.insert(throttle).values(unique.map((key) => ({ key, count: 1, resetAt })))
        .onConflictDoUpdate({
          target: throttle.key,
          set: {
            // A window that ended starts again at this count.
            count: sql`case when ${throttle.resetAt} <= now() then 1 else ${throttle.count} + 1 end`,
            resetAt: sql`case when ${throttle.resetAt} <= now() then excluded.reset_at else ${throttle.resetAt} end`
          }
        })
    },
    async sweep () {
      const deleted = await db.delete(throttle).where(lt(throttle.resetAt, sql`now()`)).returning({ key: throttle.key })
      return deleted.length
    }
  }
}

/** A store of @fastify/rate-limit (LocalStore, RedisStore, your own): `incr` and `read` with callbacks. */
export interface RateLimitStoreLike {
  incr: (key: string, cb: (err: Error | null, res?: { current: number, ttl: number }) => void, timeWindow: number, max: number) => void
  read: (key: string, cb: (err: Error | null, res?: { current: number, ttl: number }) => void, timeWindow: number, max: number) => void
}

/** The login throttle on a @fastify/rate-limit store, e.g. `rateLimitStore(new RedisStore(false, false, redis, 'login-'))`. */
export function rateLimitStore (store: RateLimitStoreLike): ThrottleStore {
  const call = (method: 'incr' | 'read', key: string, window: number): Promise<{ current: number, ttl: number }> =>
    new Promise((resolve, reject) => {
      store[method](key, (err, res) => { if (err !== null && err !== undefined) reject(err); else resolve(res ?? { current: 0, ttl: 0 }) }, window, Number.MAX_SAFE_INTEGER)
    })
  return {
    async read (entries) {
      const out = new Map<string, Counter>()
      const states = await Promise.all(entries.map((e) => call('read', e.key, e.windowMs)))
      entries.forEach((e, i) => { if (states[i].current > 0) out.set(e.key, { count: states[i].current, resetMs: states[i].ttl }) })
      return out
    },
    async hit (keys, window) {
      await Promise.all([...new Set(keys)].map((k) => call('incr', k, window)))
    }
  }
}
