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
 * A peek-then-increment check alone lets a burst of concurrent attempts through (every one peeks
 * before the first failure is counted: scrypt takes a while), so attempts in flight in this process
 * are reserved: a key is refused when `failures + in flight >= max`.
 *
 * Lockout is bounded by the window: a key's window starts at its first counted failure and its
 * counter resets when the window ends, whatever happens meanwhile (refused attempts are not counted).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { normalizeIP } from '@fastify/rate-limit'

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

type Limiter = ReturnType<FastifyInstance['createRateLimit']>

const KEY_PREFIX = 'fastify-token-auth:login:'

class Rule {
  readonly max: number
  readonly #limit: Limiter
  readonly #keys = new WeakMap<FastifyRequest, string>()
  readonly #inflight = new Map<string, number>()

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

  /** Seconds to wait when this key is over its limit (counting attempts in flight), else 0. */
  async check (request: FastifyRequest, key: string): Promise<number> {
    this.#keys.set(request, key)
    const state = await this.#limit(request, { increment: false })
    if (state.isAllowed) return 0
    const failures = state.max - state.remaining
    if (failures + (this.#inflight.get(key) ?? 0) < state.max) return 0
    return Math.max(1, state.ttlInSeconds)
  }

  reserve (key: string): void {
    this.#inflight.set(key, (this.#inflight.get(key) ?? 0) + 1)
  }

  release (key: string): void {
    const n = (this.#inflight.get(key) ?? 1) - 1
    if (n <= 0) this.#inflight.delete(key)
    else this.#inflight.set(key, n)
  }

  async fail (request: FastifyRequest, key: string): Promise<void> {
    this.#keys.set(request, key)
    await this.#limit(request)
  }
}

/** One login attempt that passed the throttle: call `fail()` if the credentials were wrong, then `done()`. */
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
  constructor (fastify: FastifyInstance, options: Required<LoginThrottleOptions>) {
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
    let retryAfter = 0
    for (const [rule, key] of keys) retryAfter = Math.max(retryAfter, await rule.check(request, key))
    if (retryAfter > 0) return { retryAfter }
    for (const [rule, key] of keys) rule.reserve(key)
    let finished = false
    return {
      async fail () {
        for (const [rule, key] of keys) await rule.fail(request, key)
      },
      done () {
        if (finished) return
        finished = true
        for (const [rule, key] of keys) rule.release(key)
      }
    }
  }
}

/** Validates throttle options (clear messages) and fills the defaults; `false` stays `false`. */
export function resolveThrottleOptions (value: unknown): Required<LoginThrottleOptions> | false {
  if (value === false) return false
  if (value === undefined || value === true) return { ...DEFAULT_THROTTLE }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError('fastify-token-auth: routes.throttle must be false or { perAccount?, perIp?, timeWindow? }')
  }
  const given = value as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!(key in DEFAULT_THROTTLE)) {
      throw new TypeError(`fastify-token-auth: unknown option routes.throttle.${key} (known: perAccount, perIp, timeWindow)`)
    }
  }
  const limit = (name: 'perAccount' | 'perIp'): number | false => {
    const v = given[name] ?? DEFAULT_THROTTLE[name]
    if (v === false) return false
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new TypeError(`fastify-token-auth: routes.throttle.${name} must be a positive integer (failed logins per window) or false, got ${String(v)}`)
    }
    return v
  }
  const timeWindow = given.timeWindow ?? DEFAULT_THROTTLE.timeWindow
  if (typeof timeWindow !== 'number' || !Number.isSafeInteger(timeWindow) || timeWindow < 1) {
    throw new TypeError(`fastify-token-auth: routes.throttle.timeWindow must be a positive integer number of milliseconds, got ${String(timeWindow)}`)
  }
  return { perAccount: limit('perAccount'), perIp: limit('perIp'), timeWindow }
}
