/**
 * `fastify.auth`: a request whose token resolved (Reason.OK) goes on; any other gets the RFC 6750
 * answer for its reason. The challenge headers never change for an instance, so they are built once.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import {
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE, FST_TOKEN_AUTH_INVALID_REQUEST, FST_TOKEN_AUTH_INVALID_TOKEN, FST_TOKEN_AUTH_MISSING, FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS,
  TokenAuthUnavailableError, challenge, retryAfterHeaders, unavailable, withHeaders
} from './errors.js'
import { kDetail, kReason, Reason, type ReasonCode, type RequestState } from './reasons.js'

export interface GuardOptions {
  realm: string
  /** Seconds in Retry-After when the provider fails (unless it says otherwise). */
  retryAfter: number
  /** The decorator's name, for the warning below. */
  authName: string
}

export interface Guard {
  auth: onRequestHookHandler
  /** The error answering `reason` (`detail`: the scope headers, or the provider's error). */
  rejection: (reason: Exclude<ReasonCode, typeof Reason.OK>, detail: unknown) => Error
}

export function createGuard ({ realm, retryAfter, authName }: GuardOptions): Guard {
  const missingHeaders = { 'www-authenticate': challenge(realm) }
  const invalidRequestHeaders = { 'www-authenticate': challenge(realm, 'invalid_request') }
  const invalidTokenHeaders = { 'www-authenticate': challenge(realm, 'invalid_token') }
  const unavailableHeaders = retryAfterHeaders(retryAfter)

  function rejection (reason: Exclude<ReasonCode, typeof Reason.OK>, detail: unknown): Error {
    switch (reason) {
      case Reason.MISSING:
      case Reason.NOT_RESOLVED:
        return withHeaders(new FST_TOKEN_AUTH_MISSING(), missingHeaders)
      case Reason.MALFORMED:
        return withHeaders(new FST_TOKEN_AUTH_INVALID_REQUEST(), invalidRequestHeaders)
      case Reason.INVALID_TOKEN:
        return withHeaders(new FST_TOKEN_AUTH_INVALID_TOKEN(), invalidTokenHeaders)
      case Reason.INSUFFICIENT_SCOPE:
        return withHeaders(new FST_TOKEN_AUTH_INSUFFICIENT_SCOPE(), detail as Record<string, string>)
      case Reason.TOO_MANY_INVALID:
        return withHeaders(new FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS(), retryAfterHeaders(detail as number))
      case Reason.UNAVAILABLE: {
        const own = detail instanceof TokenAuthUnavailableError ? detail.retryAfter : undefined
        return unavailable(own === undefined || own === retryAfter ? unavailableHeaders : retryAfterHeaders(own))
      }
      default: {
        const unexpected: never = reason
        throw new Error(`fastify-token-auth: no answer for reason ${String(unexpected)}`)
      }
    }
  }

  let warnedNotResolved = false
  function auth (this: FastifyInstance, req: FastifyRequest, reply: FastifyReply, next: HookHandlerDoneFunction): void {
    const request = req as FastifyRequest & RequestState
    const reason = request[kReason]
    if (reason === Reason.OK) return next()
    // Refused before its body was read (onRequest): close the connection, or Node would read the
    // whole upload to keep the connection alive.
    if (unreadBody(request)) reply.header('connection', 'close')
    if (reason === Reason.NOT_RESOLVED && !warnedNotResolved) {
      warnedNotResolved = true
      request.log.warn(`fastify-token-auth: ${authName} ran where no token was read (${request.method} ${request.routeOptions.url ?? request.url}): ` +
        'a route with config.tokenAuth false or registered before the plugin, the 404 handler, or a global onRequest hook. ' +
        'Guard routes with a route-level hook, or globally with addHook(\'preHandler\', ...)')
    }
    next(rejection(reason, request[kDetail]))
  }

  return { auth, rejection }
}

/** An HTTP/1 request with a body not yet read. */
function unreadBody (request: FastifyRequest): boolean {
  const raw = request.raw
  if (raw.httpVersionMajor !== 1 || raw.readableEnded) return false
  const length = raw.headers['content-length']
  return (length !== undefined && length !== '0') || raw.headers['transfer-encoding'] !== undefined
}
