// Every error the plugin answers with or throws at startup: the FST_TOKEN_AUTH_* codes (@fastify/error),
// the RFC 6750 §3 WWW-Authenticate challenges, the one 503 answer, and what of a failure is logged.
// (The store's own error classes, thrown by TokenService and createDatabase, are in store/errors.ts.)
import createError from '@fastify/error'

// No stack traces: a rejection is a normal outcome on the hot path, and a stack per request is the
// single most expensive thing an error path can do. The code says where the error comes from.
const noStack = false

export const FST_TOKEN_AUTH_MISSING = createError(
  'FST_TOKEN_AUTH_MISSING', 'Authentication required: send Authorization: Bearer <token>', 401, Error, noStack)
export const FST_TOKEN_AUTH_INVALID_REQUEST = createError(
  'FST_TOKEN_AUTH_INVALID_REQUEST', 'Malformed Authorization header', 400, Error, noStack)
export const FST_TOKEN_AUTH_INVALID_TOKEN = createError(
  'FST_TOKEN_AUTH_INVALID_TOKEN', 'Invalid token', 401, Error, noStack)
export const FST_TOKEN_AUTH_INSUFFICIENT_SCOPE = createError(
  'FST_TOKEN_AUTH_INSUFFICIENT_SCOPE', 'The token lacks a scope this route requires', 403, Error, noStack)
export const FST_TOKEN_AUTH_UNAVAILABLE = createError(
  'FST_TOKEN_AUTH_UNAVAILABLE', 'Authentication is temporarily unavailable, retry later', 503, Error, noStack)
export const FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS = createError(
  'FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS', 'Too many invalid tokens from this address, retry later', 429, Error, noStack)
// The login routes. One message for every bad-credentials case, so the answer does not tell an
// unknown user from a wrong password or a deactivated account.
export const FST_TOKEN_AUTH_BAD_CREDENTIALS = createError(
  'FST_TOKEN_AUTH_BAD_CREDENTIALS', 'Invalid username or password', 401, Error, noStack)
export const FST_TOKEN_AUTH_LOGIN_THROTTLED = createError(
  'FST_TOKEN_AUTH_LOGIN_THROTTLED', 'Too many failed login attempts, retry later', 429, Error, noStack)
/** The token routes: a token that is not the caller's, or does not exist (ids do not leak). */
export const FST_TOKEN_AUTH_TOKEN_NOT_FOUND = createError(
  'FST_TOKEN_AUTH_TOKEN_NOT_FOUND', 'No such token', 404, Error, noStack)
/** The user holds as many live tokens as the server allows (service.maxTokensPerUser). */
export const FST_TOKEN_AUTH_TOKEN_LIMIT = createError(
  'FST_TOKEN_AUTH_TOKEN_LIMIT', 'Too many tokens: revoke one first', 403, Error, noStack)
/** The token routes: a request the store refuses (a lifetime over the server's maximum, a new
 * password that breaks the rules); the message says what. */
export const FST_TOKEN_AUTH_BAD_REQUEST = createError(
  'FST_TOKEN_AUTH_BAD_REQUEST', '%s', 400, Error, noStack)
export const FST_TOKEN_AUTH_NOT_REVOCABLE = createError(
  'FST_TOKEN_AUTH_NOT_REVOCABLE', 'This token does not come from the token store and cannot be logged out', 403, Error, noStack)

/** Thrown at registration (or by a constructor) for a bad option; `option` is the option's path. */
export const FST_TOKEN_AUTH_INVALID_OPTION = createError(
  'FST_TOKEN_AUTH_INVALID_OPTION', 'fastify-token-auth: %s', 500, TypeError)

/** The plugin registered a second time in the same context (it is global, through fastify-plugin). */
export const FST_TOKEN_AUTH_ALREADY_REGISTERED = createError(
  'FST_TOKEN_AUTH_ALREADY_REGISTERED', 'fastify-token-auth: the plugin is already registered here (it is global, through fastify-plugin): register it once', 500)

export const errorCodes = {
  FST_TOKEN_AUTH_MISSING,
  FST_TOKEN_AUTH_INVALID_REQUEST,
  FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE,
  FST_TOKEN_AUTH_UNAVAILABLE,
  FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS,
  FST_TOKEN_AUTH_BAD_CREDENTIALS,
  FST_TOKEN_AUTH_LOGIN_THROTTLED,
  FST_TOKEN_AUTH_NOT_REVOCABLE,
  FST_TOKEN_AUTH_TOKEN_NOT_FOUND,
  FST_TOKEN_AUTH_TOKEN_LIMIT,
  FST_TOKEN_AUTH_BAD_REQUEST,
  FST_TOKEN_AUTH_INVALID_OPTION,
  FST_TOKEN_AUTH_ALREADY_REGISTERED
}

/**
 * What a provider throws when its backing store cannot answer. Any thrown error is treated the same
 * way (503); this one lets a provider suggest a Retry-After in seconds.
 */
export class TokenAuthUnavailableError extends Error {
  /** Seconds for `Retry-After`; undefined: the plugin's `retryAfter` option. */
  readonly retryAfter: number | undefined
  constructor (message = 'token provider unavailable', options?: { cause?: unknown, retryAfter?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TokenAuthUnavailableError'
    this.retryAfter = options?.retryAfter
  }
}

type WithHeaders = Error & { headers?: Record<string, string> }

/** An error carrying the headers Fastify's error handler sends with it (WWW-Authenticate, Retry-After). */
export function withHeaders<E extends Error> (err: E, headers: Record<string, string>): E {
  (err as WithHeaders).headers = headers
  return err
}

/** Headers for a 503, built once per instance; `unavailable(headers)` makes the answer. */
export function retryAfterHeaders (seconds: number): Record<string, string> {
  return Object.freeze({ 'retry-after': String(seconds) }) as Record<string, string>
}

/** The one 503 answer: FST_TOKEN_AUTH_UNAVAILABLE with Retry-After. */
export function unavailable (headers: Record<string, string>): Error {
  return withHeaders(new FST_TOKEN_AUTH_UNAVAILABLE(), headers)
}

/** `Bearer realm="..."` plus an error code and, for insufficient_scope, the scopes the route needs. */
export function challenge (realm: string, error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope', scope?: readonly string[]): string {
  let value = `Bearer realm="${realm}"`
  if (error !== undefined) value += `, error="${error}"`
  if (scope !== undefined && scope.length > 0) value += `, scope="${scope.join(' ')}"`
  return value
}

/**
 * What to log of a store or provider failure: the innermost cause's type, code and message. The
 * wrappers around it are left out on purpose: Drizzle's "Failed query" message lists the query's
 * parameters, which are token and password hashes.
 */
export function describeFailure (err: unknown): { type: string, code?: string, message: string } {
  let inner = err
  for (let depth = 0; depth < 8; depth++) {
    const cause = (inner as { cause?: unknown } | null)?.cause
    if (cause === undefined || cause === null) break
    inner = cause
  }
  if (inner instanceof Error) {
    const code = (inner as { code?: unknown }).code
    return { type: inner.name, code: typeof code === 'string' ? code : undefined, message: inner.message }
  }
  return { type: typeof inner, message: String(inner) }
}

/** Logs a store or provider failure at error level, without the parts that may hold hashes. */
export function logFailure (log: { error: (obj: object, msg: string) => void }, err: unknown, what: string, extra?: object): void {
  log.error({ failure: describeFailure(err), ...extra }, `fastify-token-auth: ${what}`)
}
