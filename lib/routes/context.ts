// What every route group gets from the plugin: the store's service, the resolved route options, the
// plugin's guard, where the user is, and `storeCall`, the one way a route waits for the store.
import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { challenge, FST_TOKEN_AUTH_BAD_REQUEST, FST_TOKEN_AUTH_INVALID_TOKEN, FST_TOKEN_AUTH_NOT_REVOCABLE, FST_TOKEN_AUTH_TOKEN_LIMIT, logFailure, unavailable, withHeaders } from '../errors.js'
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
  /** The user of the request when the store resolved it (a token the service can revoke), else 403 NOT_REVOCABLE. */
  storeUser: (request: FastifyRequest) => StoreUser
  /** The realm of the challenges. */
  realm: string
  /**
   * The store's answer, or the one 503 (logged, with Retry-After) when it fails or, unless `untimed`,
   * takes longer than `routes.timeout` (`onLate` gets an answer that arrives after that). The
   * store's refusals become the client's answers: 400 for bad input, 403 at the token limit, 401
   * invalid_token when the token's user or the token itself went away meanwhile (deactivated,
   * deleted, revoked: the cache had not heard yet). With `passErrors` (but for 400 and 403), or for any other code, the
   * TokenServiceError is passed on for the route to answer.
   */
  storeCall: <T>(request: FastifyRequest, what: string, work: Promise<T>, options?: StoreCallOptions<T>) => Promise<T>
  /** The database's counters, when the throttle keeps them there. */
  throttleStore: ThrottleStore | undefined
}

/** The user of a token the store resolved. */
export interface StoreUser { id: UserId, tokenId: number, scopes: readonly string[] }

/** `storeUser` for the plugin's user property and store provider. */
export function createStoreUser (userProperty: string, fromStore: (user: unknown) => boolean): (request: FastifyRequest) => StoreUser {
  return (request) => {
    const user = (request as unknown as Record<string, unknown>)[userProperty]
    if (!fromStore(user)) throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
    return user as StoreUser
  }
}

export interface StoreCallOptions<T> {
  untimed?: boolean
  passErrors?: boolean
  onLate?: (late: T) => void
}

/** The store's refusals of what the client asked (the message is theirs to read). */
const BAD_REQUEST = new Set(['INVALID_TOKEN_OPTIONS', 'INVALID_PASSWORD', 'INVALID_USERNAME'])
/** The request's token, or its user, is gone: the token no longer works. */
const TOKEN_GONE = new Set(['USER_NOT_FOUND', 'USER_INACTIVE', 'PARENT_TOKEN_GONE'])

class StoreTimeoutError extends Error {
  constructor (ms: number) {
    super(`the token store did not answer within ${ms} ms`)
    this.name = 'StoreTimeoutError'
  }
}

export function createStoreCall (timeout: number, unavailableHeaders: Record<string, string>, realm: string): RoutesContext['storeCall'] {
  const invalidTokenHeaders = { 'www-authenticate': challenge(realm, 'invalid_token') }
  return async function storeCall (request, what, work, options = {}) {
    try {
      return await (options.untimed === true ? work : withTimeout(work, timeout, () => new StoreTimeoutError(timeout)))
    } catch (err) {
      if (err instanceof TokenServiceError && err.code === 'TOKEN_LIMIT') throw new FST_TOKEN_AUTH_TOKEN_LIMIT()
      if (err instanceof TokenServiceError && BAD_REQUEST.has(err.code)) throw new FST_TOKEN_AUTH_BAD_REQUEST(err.message)
      if (err instanceof TokenServiceError && options.passErrors === true) throw err
      if (err instanceof TokenServiceError && TOKEN_GONE.has(err.code)) throw withHeaders(new FST_TOKEN_AUTH_INVALID_TOKEN(), invalidTokenHeaders)
      if (err instanceof TokenServiceError && err.code !== 'KDF_BUSY') throw err
      if (err instanceof StoreTimeoutError && options.onLate !== undefined) work.then(options.onLate, () => {})
      logFailure(request.log, err, `${what}: token store unavailable`)
      throw unavailable(unavailableHeaders)
    }
  }
}
