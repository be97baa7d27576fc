/**
 * Login throttling: failed logins are counted per account (the normalized username) and per client
 * IP, in fixed windows, with @fastify/rate-limit's counters.
 *
 * Why `createRateLimit` and not the route hook: the hook counts every request, before the body is
 * parsed, so it can neither key on the username nor leave successful logins out. The manual limiter
 * can: `{ increment: false }` peeks before the password is checked, and only a failure increments.
 * The counters live in @fastify/rate-limit's store: an in-process LRU by default, or, when the app
 * has registered @fastify/rate-limit itself with `redis`, that store, shared by every process.
 *
 * A peek-then-increment check alone lets a burst of concurrent attempts through (each one peeks
 * before the first failure is counted: scrypt takes a while). So attempts in flight are bounded per
 * key, in this process: at most `max - failures` run at once; the others wait for one to finish and
 * check again. A burst of wrong passwords gets exactly `max` 401s and then 429s, while a burst of
 * good logins (which count nothing) all succeed, `max` at a time. Keys are taken in a fixed order
 * (account, then IP), so two requests never wait on each other.
 *
 * Lockout is bounded by the window: a key's window starts at its first counted failure and its
 * counter resets when the window ends, whatever happens meanwhile (refused attempts are not counted).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { normalizeIP } from '@fastify/rate-limit'
import { integer, ms, object, orFalse, type Checked } from '../validate.js'

export interface LoginThrottleOptions {
  /** Failed logins allowed per account (normalized username) per window; `false`: no account limit.
   * Default 10 (OWASP's authentication cheat sheet suggests a lockout threshold of this order). */
  perAccount?: number | false
  /** Failed logins allowed per client IP (`request.ip`; IPv6 per /64) per window; `false`: no IP limit.
   * Default 100: higher, since many users can share an address (NAT, offices, mobile carriers). */
  perIp?: number | false
  /** The window, in milliseconds. Default 900,000 (15 minutes). An account or address is refused for
   * at most this long after its first counted failure. */
  timeWindow?: number
}

export const DEFAULT_THROTTLE = Object.freeze({ perAccount: 10, perIp: 100, timeWindow: 15 * 60 * 1000 })

/** `routes.throttle`: limits (failed logins per window) or false, the window in ms. */
export const throttleOptions = orFalse(object({
  perAccount: orFalse(integer({ min: 1, max: 1_000_000, default: DEFAULT_THROTTLE.perAccount })),
  perIp: orFalse(integer({ min: 1, max: 1_000_000, default: DEFAULT_THROTTLE.perIp })),
  timeWindow: ms(DEFAULT_THROTTLE.timeWindow)
}, { expected: 'false or { perAccount?, perIp?, timeWindow? }' }))
export type ResolvedThrottleOptions = Exclude<Checked<typeof throttleOptions>, false>

type Limiter = ReturnType<FastifyInstance['createRateLimit']>

const KEY_PREFIX = 'fastify-token-auth:login:'

/** What Rule.acquire answers for a key on the app's allowList. */
const ALLOWED = -1

/** Attempts waiting for a slot on one key, beyond which more are refused at once (429). */
const MAX_WAITING = 1000

interface Slot { running: number, waiting: Array<() => void> }

class Rule {
  readonly max: number
  readonly #limit: Limiter
  readonly #keys = new WeakMap<FastifyRequest, string>()
  readonly #slots = new Map<string, Slot>()

  constructor (fastify: FastifyInstance, max: number, timeWindow: number) {
    this.max = max
    this.#limit = fastify.createRateLimit({
      max,
      timeWindow,
      skipOnError: false,
      // The key was computed once per request (from the parsed body or the IP) by the throttle.
      keyGenerator: (request) => this.#keys.get(request) as string
    })
  }

  /**
   * Takes a slot for an attempt on this key: resolves to 0 once taken (call `release`), to ALLOWED
   * for a key on the app's allowList (nothing taken, nothing to release), or to the seconds to wait
   * when the key has used up its failures (nothing taken).
   */
  async acquire (request: FastifyRequest, key: string): Promise<number> {
    this.#keys.set(request, key)
    for (;;) {
      const state = await this.#limit(request, { increment: false })
      if (state.isAllowed) return ALLOWED
      const failures = state.max - state.remaining
      const slot = this.#slots.get(key) ?? { running: 0, waiting: [] }
      if (failures >= state.max) {
        this.#wakeOne(key, slot) // so the waiting ones learn it too
        return Math.max(1, state.ttlInSeconds)
      }
      // No await between the peek above and here: the check and the reservation are one step.
      if (slot.running < state.max - failures) {
        slot.running++
        this.#slots.set(key, slot)
        return 0
      }
      if (slot.waiting.length >= MAX_WAITING) return 1
      this.#slots.set(key, slot)
      await new Promise<void>((resolve) => { slot.waiting.push(resolve) })
    }
  }

  release (key: string): void {
    const slot = this.#slots.get(key)
    if (slot === undefined) return
    slot.running--
    this.#wakeOne(key, slot)
  }

  #wakeOne (key: string, slot: Slot): void {
    const next = slot.waiting.shift()
    if (next !== undefined) next()
    else if (slot.running <= 0) this.#slots.delete(key)
  }

  async fail (request: FastifyRequest, key: string): Promise<void> {
    this.#keys.set(request, key)
    await this.#limit(request)
  }
}

/** One login attempt that passed the throttle: call `fail()` if the credentials were wrong, then always `done()`. */
export interface ThrottledAttempt {
  fail (): Promise<void>
  done (): void
}

/** What `begin` answers when the attempt must be refused. */
export interface Throttled { retryAfter: number }

export class LoginThrottle {
  readonly #account: Rule | undefined
  readonly #ip: Rule | undefined

  /**
   * @param fastify an instance on which @fastify/rate-limit is registered (`createRateLimit`).
   */
  constructor (fastify: FastifyInstance, options: ResolvedThrottleOptions) {
    this.#account = options.perAccount === false ? undefined : new Rule(fastify, options.perAccount, options.timeWindow)
    this.#ip = options.perIp === false ? undefined : new Rule(fastify, options.perIp, options.timeWindow)
  }

  /**
   * Checks the limits for this request and, if it may proceed, reserves the attempt.
   * `account` is the normalized username, or null when the name cannot be an account (no account
   * limit applies then; the IP limit still does). Rejects when the counter store fails.
   */
  async begin (request: FastifyRequest, account: string | null): Promise<ThrottledAttempt | Throttled> {
    const keys: Array<[Rule, string]> = []
    if (this.#account !== undefined && account !== null) keys.push([this.#account, KEY_PREFIX + 'account:' + account])
    if (this.#ip !== undefined) keys.push([this.#ip, KEY_PREFIX + 'ip:' + normalizeIP(request.ip)])
    const taken: Array<[Rule, string]> = []
    const releaseAll = (): void => { for (const [rule, key] of taken.splice(0)) rule.release(key) }
    try {
      for (const [rule, key] of keys) {
        const retryAfter = await rule.acquire(request, key)
        if (retryAfter > 0) {
          releaseAll()
          return { retryAfter }
        }
        // An allowlisted key took no slot: releasing one would free another attempt's.
        if (retryAfter !== ALLOWED) taken.push([rule, key])
      }
    } catch (err) {
      releaseAll()
      throw err
    }
    return {
      async fail () {
        for (const [rule, key] of keys) await rule.fail(request, key)
      },
      done: releaseAll
    }
  }
}
