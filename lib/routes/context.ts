// What every route group gets from the plugin: the store's service, the resolved route options, the
// plugin's guard, where the user is, and `storeCall`, the one way a route waits for the store.
import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { logFailure, unavailable } from '../errors.js'
import { TokenServiceError } from '../store/errors.js'
import type { TokenService } from '../store/service.js'
import type { ThrottleStore } from '../store/throttle-store.js'
import type { UserId } from '../users/user-source.js'
import { withTimeout } from '../timeout.js'
import type { ResolvedRoutesOptions } from './options.js'

export interface RoutesContext {
  service: TokenService
  options: ResolvedRoutesOptions
  /** The plugin's guard (fastify.auth). */
  auth: onRequestHookHandler
  /** The request property the plugin puts the user in. */
  userProperty: string
  /** True when the user was resolved from the store (a token the service can revoke). */
  fromStore: (user: unknown) => user is { id: UserId, tokenId: number }
  /**
   * The store's answer, or the one 503 (logged, with Retry-After) when it fails or, unless `untimed`,
   * takes longer than `routes.timeout` (`onLate` gets an answer that arrives after that). A TokenServiceError (the caller's mistake: unknown user...) is passed on for
   * the route to answer.
   */
  storeCall: <T>(request: FastifyRequest, what: string, work: Promise<T>, options?: StoreCallOptions<T>) => Promise<T>
  /** The login throttle's counters. */
  throttleStore: ThrottleStore
}

export interface StoreCallOptions<T> {
  untimed?: boolean
  onLate?: (late: T) => void
}

class StoreTimeoutError extends Error {
  constructor (ms: number) {
    super(`the token store did not answer within ${ms} ms`)
    this.name = 'StoreTimeoutError'
  }
}

export function createStoreCall (timeout: number, unavailableHeaders: Record<string, string>): RoutesContext['storeCall'] {
  return async function storeCall (request, what, work, options = {}) {
    try {
      return await (options.untimed === true ? work : withTimeout(work, timeout, () => new StoreTimeoutError(timeout)))
    } catch (err) {
      if (err instanceof TokenServiceError && err.code !== 'KDF_BUSY') throw err
      if (err instanceof StoreTimeoutError && options.onLate !== undefined) work.then(options.onLate, () => {})
      logFailure(request.log, err, `${what}: token store unavailable`)
      throw unavailable(unavailableHeaders)
    }
  }
}
