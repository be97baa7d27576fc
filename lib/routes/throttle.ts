/**
 * Login throttling, built so that it slows guessing without handing a stranger the owner's account.
 * Failed logins (wrong, unknown or refused attempts, and those that timed out) are counted, in windows
 * of `timeWindow` that start at a key's first failure, under three keys:
 *
 * - the account and address pair (`perAccountAndIp`, default 10): guessing one account from one place;
 * - the address (`perIp`, default 100; IPv6 per /64): guessing many accounts from one place;
 * - the account (`perAccount`, default 100): guessing one account from many places. It does not apply
 *   to an address the account logged in from within `knownAddressTtl` (30 days), so a stranger who
 *   spends an account's failures cannot lock its owner out of the owner's usual device.
 *
 * Past a limit the answer is 429 with Retry-After until that key's window ends (it never moves: the
 * first failure plus `timeWindow`). An attempt refused for being one too many at once (the password
 * queue's per-client bound), or that timed out, counts like a failure. Successes are not counted.
 * Past `delay.after` failures an address also waits between its checks, a delay that doubles with
 * each further failure (failure-delay.ts; not on an address the account logged in from).
 * The 429s for a limit reached are paced per address (`refusalsPerSecond`, refusal-pace.ts): a client
 * that asks as fast as it is refused would otherwise take the CPU everyone else's password checks
 * need. Those for one too many at once are not: each counts, so the limits soon hold them too.
 *
 * A client in good standing (a known address, or one without failures in the window) is "trusted":
 * it may use the password slot kept in reserve (kdf-queue.ts), so a flood from a few clients cannot
 * hold every slot. The password queue's fair share is per address and per account, except that an
 * address the account logged in from does not share the account's (one in flight, two waiting).
 *
 * The counters live in the database by default (throttle-store.ts: shared by every process, kept
 * across restarts, never evicted), or in any @fastify/rate-limit store.
 */
import type { FastifyRequest } from 'fastify'
import { normalizeIP } from '@fastify/rate-limit'
import type { ThrottleStore } from '../store/throttle-store.js'
import { FailureDelay } from './failure-delay.js'
import { RefusalPace } from './refusal-pace.js'
import { integer, invalid, ms, object, optional, orFalse, satisfies, type Check, type Checked } from '../validate.js'

export interface LoginThrottleOptions {
  /** Failed logins per account and address pair per window; `false`: no such limit. Default 10. */
  perAccountAndIp?: number | false
  /** Failed logins per account (from addresses it never logged in from) per window; `false`: none. Default 100. */
  perAccount?: number | false
  /** Failed logins per client address (`request.ip`; IPv6 per /64) per window; `false`: none. Default 100. */
  perIp?: number | false
  /** The window, in milliseconds. Default 900,000 (15 minutes). */
  timeWindow?: number
  /** How long, in ms, an address the account logged in from stays exempt from `perAccount`; `false`: never. Default 30 days. */
  knownAddressTtl?: number | false
  /** Where the counters are: the database (default) or `rateLimitStore(new RedisStore(...))`. */
  store?: ThrottleStore
  /** 429s one address gets per second, after a burst of as many; more wait their turn; `false`: unpaced. Default 10. */
  refusalsPerSecond?: number | false
  /** Addresses (exact, after IPv6 /64 folding) or a function of the address that the throttle leaves alone. */
  allowList?: readonly string[] | ((address: string) => boolean)
  /** Growing delays between an address's checks once it failed `after` times: `base` ms, doubling, at most `max`; `false`: none. */
  delay?: { after?: number, base?: number, max?: number } | false
}

export const DEFAULT_THROTTLE = Object.freeze({ perAccountAndIp: 10, perAccount: 100, perIp: 100, timeWindow: 15 * 60 * 1000, knownAddressTtl: 30 * 24 * 3600 * 1000, refusalsPerSecond: 10 })
export const DEFAULT_DELAY = Object.freeze({ after: 5, base: 1000, max: 60_000 })

const limit = (def: number): Check<number | false> => orFalse(integer({ min: 1, max: 1_000_000, default: def }))
const isStore = (v: unknown): boolean => typeof (v as ThrottleStore | null)?.read === 'function' && typeof (v as ThrottleStore).hit === 'function'
const allowList: Check<LoginThrottleOptions['allowList']> = (value, path) => {
  if (value === undefined || typeof value === 'function') return value as LoginThrottleOptions['allowList']
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) invalid(path, 'an array of addresses or a function (address) => boolean', value)
  return Object.freeze([...value])
}

/** `routes.throttle`: the limits (failed logins per window) or false. */
export const throttleOptions = orFalse(object({
  perAccountAndIp: limit(DEFAULT_THROTTLE.perAccountAndIp),
  perAccount: limit(DEFAULT_THROTTLE.perAccount),
  perIp: limit(DEFAULT_THROTTLE.perIp),
  timeWindow: ms(DEFAULT_THROTTLE.timeWindow),
  knownAddressTtl: orFalse(integer({ min: 1, max: 366 * 24 * 3600 * 1000, default: DEFAULT_THROTTLE.knownAddressTtl, unit: 'milliseconds' })),
  refusalsPerSecond: orFalse(integer({ min: 1, max: 1_000_000, default: DEFAULT_THROTTLE.refusalsPerSecond })),
  store: optional(satisfies<ThrottleStore>(isStore, 'a throttle store (read and hit), e.g. rateLimitStore(new RedisStore(...))')),
  allowList,
  delay: orFalse(object({
    after: integer({ min: 0, max: 1_000_000, default: DEFAULT_DELAY.after }),
    base: ms(DEFAULT_DELAY.base),
    max: integer({ min: 1, max: 3_600_000, default: DEFAULT_DELAY.max, unit: 'milliseconds' })
  }, { expected: 'false or { after?, base?, max? }' }))
}, { expected: 'false or { perAccountAndIp?, perAccount?, perIp?, timeWindow?, knownAddressTtl?, refusalsPerSecond?, store?, allowList?, delay? }' }))
export type ResolvedThrottleOptions = Exclude<Checked<typeof throttleOptions>, false>

const PREFIX = 'login:'

/** An attempt the throttle lets through: who it is for the password queue, and what to count after. */
export interface ThrottledAttempt {
  /** The client's keys for the fair share of the password checks. */
  clients: string[]
  /** A known address or one without failures: it may use the reserved password slot. */
  trusted: boolean
  /** Counts a failure (wrong credentials, refused, timed out) against the pair, the address and the
   * account; `delays`: it also delays the address's next check (not for a 503: the server's fault). */
  fail: (delays?: boolean) => Promise<void>
  /** Remembers the address as one the account logs in from. */
  succeed: () => Promise<void>
  /** Ends the attempt however it went (a `finally`): releases its hold on the address's one check. */
  end: () => void
}

/** What `begin` answers when the attempt must be refused: seconds until the window ends. */
export interface Throttled { retryAfter: number }

export class LoginThrottle {
  readonly #o: ResolvedThrottleOptions
  readonly #store: ThrottleStore
  readonly #pace: RefusalPace | undefined
  readonly #delay: FailureDelay | undefined

  constructor (options: ResolvedThrottleOptions, store: ThrottleStore) {
    this.#o = options
    this.#store = store
    this.#pace = options.refusalsPerSecond === false ? undefined : new RefusalPace(options.refusalsPerSecond)
    this.#delay = options.delay === false ? undefined : new FailureDelay(options.delay)
  }

  /**
   * Checks the limits for this request. `account` is the normalized login name, or null when the
   * name cannot be an account (then only the address limit applies). A refusal resolves at its
   * address's pace. Rejects when the store fails.
   */
  async begin (request: FastifyRequest, account: string | null): Promise<ThrottledAttempt | Throttled> {
    const o = this.#o
    const address = normalizeIP(request.ip)
    const clients = account === null ? [`ip:${address}`] : [`ip:${address}`, `account:${account}`]
    if (this.#allowed(address)) return { clients, trusted: true, fail: async () => {}, succeed: async () => {}, end: () => {} }
    const ip = `${PREFIX}ip:${address}`
    const pair = account === null ? undefined : `${PREFIX}pair:${account}|${address}`
    const acct = account === null ? undefined : `${PREFIX}account:${account}`
    const known = account === null || o.knownAddressTtl === false ? undefined : `${PREFIX}known:${account}|${address}`
    const keyed = [ip, pair, acct].filter((k) => k !== undefined).map((key) => ({ key, windowMs: o.timeWindow }))
    if (known !== undefined) keyed.push({ key: known, windowMs: o.knownAddressTtl as number })
    const counters = await this.#store.read(keyed)
    const count = (key: string | undefined): number => key === undefined ? 0 : counters.get(key)?.count ?? 0
    const refuse = async (key: string): Promise<Throttled> => {
      await this.#pace?.wait(address)
      return { retryAfter: Math.max(1, Math.ceil((counters.get(key)?.resetMs ?? o.timeWindow) / 1000)) }
    }
    const isKnown = known !== undefined && counters.has(known)
    if (o.perIp !== false && count(ip) >= o.perIp) return await refuse(ip)
    if (pair !== undefined && o.perAccountAndIp !== false && count(pair) >= o.perAccountAndIp) return await refuse(pair)
    if (acct !== undefined && !isKnown && o.perAccount !== false && count(acct) >= o.perAccount) return await refuse(acct)
    const delay = isKnown ? undefined : this.#delay
    const delayed = delay?.begin(address, count(ip)) ?? { holder: 0 }
    if ('wait' in delayed) {
      await this.#pace?.wait(address)
      return { retryAfter: Math.max(1, Math.ceil(delayed.wait / 1000)) }
    }
    const { holder } = delayed
    const failures = [pair, ip, acct].filter((k) => k !== undefined)
    return {
      // The account's share of the password checks is not the owner's on a known address either (as
      // for its counter): else a stranger guessing the account would hold the owner's logins to it.
      clients: isKnown ? [`ip:${address}`] : clients,
      trusted: isKnown || (count(ip) === 0 && count(pair) === 0),
      fail: async (delays = true) => {
        if (delays) delay?.failed(address, count(ip) + 1)
        await this.#store.hit(failures, o.timeWindow)
      },
      succeed: async () => { if (known !== undefined) await this.#store.hit([known], o.knownAddressTtl as number) },
      end: () => { delay?.ended(address, holder) }
    }
  }

  #allowed (address: string): boolean {
    const list = this.#o.allowList
    if (list === undefined) return false
    return typeof list === 'function' ? list(address) === true : list.includes(address)
  }
}
