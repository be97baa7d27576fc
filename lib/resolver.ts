/**
 * The per-route onRequest hook that reads the token: header → provider → `request.user`, or the
 * reason there is none (reasons.ts), for the guard to answer. This is the hot path: no allocation but
 * the token substring on the way to the provider, no promise unless the provider returns one.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { hasDuplicateAuthorization, parseBearer } from './header.js'
import type { InvalidTokenLimiter } from './invalid-tokens.js'
import type { Metrics } from './metrics.js'
import type { TokenAuthProvider } from './providers/provider.js'
import { kDetail, kReason, Reason, type RequestState } from './reasons.js'

type StatefulRequest = FastifyRequest & RequestState

export interface ResolverContext {
  /** The request property the user goes in. */
  userKey: string
  maxTokenLength: number
  /** Called when the provider fails (threw, rejected, or its user object threw). */
  onFailure: (request: FastifyRequest, err: unknown) => void
  /** Unknown tokens counted per address (undefined: no limit). */
  invalidTokens: InvalidTokenLimiter | undefined
  /** Counters of what the resolver decided (metrics.ts). */
  requests: Metrics['requests']
}

/**
 * A resolver on `provider`. With `scopes`, the user must carry all of them (else INSUFFICIENT_SCOPE,
 * with `scopeHeaders` for the guard to send).
 */
export function createResolver (ctx: ResolverContext, provider: TokenAuthProvider, scopes?: readonly string[], scopeHeaders?: Record<string, string>): onRequestHookHandler {
  const { userKey, maxTokenLength, onFailure, invalidTokens, requests } = ctx

  function fail (request: StatefulRequest, err: unknown): void {
    requests.unavailable++
    request[kReason] = Reason.UNAVAILABLE
    request[kDetail] = err
    onFailure(request, err)
  }

  /** Records the provider's answer. A user object that throws (a getter on `scopes`) is a failure. */
  function settle (request: StatefulRequest, user: unknown): void {
    try {
      // Only an object is a user: null and undefined are "unknown", and so is anything else a careless
      // provider returns (`false` from `map.has(t) && map.get(t)`), rather than a "yes".
      if (user === null || typeof user !== 'object') {
        requests.invalid++
        request[kReason] = Reason.INVALID_TOKEN
        invalidTokens?.count(request)
        return
      }
      (request as unknown as Record<string, unknown>)[userKey] = user
      if (scopes === undefined || hasScopes(user, scopes)) {
        requests.accepted++
        request[kReason] = Reason.OK
      } else {
        requests.forbidden++
        request[kReason] = Reason.INSUFFICIENT_SCOPE
        request[kDetail] = scopeHeaders
      }
    } catch (err) {
      fail(request, err)
    }
  }

  return function resolveToken (req: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
    const request = req as StatefulRequest
    const raw = request.raw
    // A CORS preflight carries no credentials by design; leave it to the CORS plugin.
    if (raw.method === 'OPTIONS' && raw.headers['access-control-request-method'] !== undefined) return next()
    const value = raw.headers.authorization
    // Two credentials are ambiguous whatever their schemes (Node keeps only the first in `headers`).
    if (value !== undefined && hasDuplicateAuthorization(raw.rawHeaders)) {
      requests.malformed++
      request[kReason] = Reason.MALFORMED
      return next()
    }
    const token = parseBearer(value, maxTokenLength)
    if (typeof token !== 'string') {
      if (token === Reason.MISSING) requests.missing++
      else requests.malformed++
      request[kReason] = token
      return next()
    }
    const wait = invalidTokens === undefined ? 0 : invalidTokens.blocked(request)
    if (wait > 0) {
      requests.tooManyInvalid++
      request[kReason] = Reason.TOO_MANY_INVALID
      request[kDetail] = wait
      return next()
    }
    let result
    try {
      result = provider.getUser(token, request)
    } catch (err) {
      fail(request, err)
      return next()
    }
    // `!= null`: a JavaScript provider may well return undefined (a Map's get) for an unknown token.
    if (result != null && typeof (result as Promise<unknown>).then === 'function') {
      // Promise.resolve: a hand-made thenable settles once, and a throw in it becomes a failure.
      Promise.resolve(result).then(
        (user) => { settle(request, user); next() },
        (err) => { fail(request, err); next() }
      )
      return
    }
    settle(request, result)
    next()
  }
}

function hasScopes (user: object, required: readonly string[]): boolean {
  const have = (user as { scopes?: unknown }).scopes
  // An array only: a space-separated string would match scopes as substrings ('notadmin' has 'admin').
  if (!Array.isArray(have)) return false
  for (const scope of required) if (!have.includes(scope)) return false
  return true
}
