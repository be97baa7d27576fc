/**
 * Failed token lookups, limited per client address: past `max` unknown tokens in `timeWindow` ms, an
 * address gets 429 with Retry-After until its window ends, without asking the provider at all. A
 * token made up with a valid checksum (the checksum is no secret) costs a database query; this keeps
 * a client from making them by the thousand. Counted in this process (no query per attempt), per
 * address (IPv6 per /64), in a bounded LRU.
 */
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import { integer, ms, object, orFalse, type Checked } from './validate.js'

export const invalidTokensOption = orFalse(object({
  max: integer({ min: 1, max: 1_000_000, default: 100 }),
  timeWindow: ms(60_000),
  /** Addresses tracked at once (the least recent forgotten past it). */
  addresses: integer({ min: 1, max: 10_000_000, default: 100_000 })
}, { expected: 'false or { max?, timeWindow?, addresses? }' }))
export type InvalidTokensOptions = Exclude<Checked<typeof invalidTokensOption>, false>

export class InvalidTokenLimiter {
  readonly #max: number
  readonly #counts: LRUCache<string, { n: number }>

  constructor (o: InvalidTokensOptions) {
    this.#max = o.max
    this.#counts = new LRUCache({ max: o.addresses, ttl: o.timeWindow, updateAgeOnGet: false })
  }

  /** Seconds to wait when this request's address is over the limit, else 0. Cheap while nothing is counted. */
  blocked (request: FastifyRequest): number {
    if (this.#counts.size === 0) return 0
    const key = normalizeIP(request.ip)
    const entry = this.#counts.get(key)
    if (entry === undefined || entry.n < this.#max) return 0
    return Math.max(1, Math.ceil(this.#counts.getRemainingTTL(key) / 1000))
  }

  /** Counts one unknown token from this request's address (its window starts at its first). */
  count (request: FastifyRequest): void {
    const key = normalizeIP(request.ip)
    const entry = this.#counts.get(key)
    if (entry === undefined) this.#counts.set(key, { n: 1 })
    else entry.n++
  }
}
