import type { FastifyRequest } from 'fastify'
import { satisfies } from '../validate.js'

/**
 * The user a provider resolves a token to. Apps name their own shape by augmenting
 * `TokenAuthUserTypes` (like @fastify/jwt's `FastifyJWT`):
 *
 *   declare module 'fastify-token-auth' {
 *     interface TokenAuthUserTypes { user: { id: number, username: string, scopes: string[] } }
 *   }
 */
export interface DefaultTokenAuthUser {
  id: string | number
  username: string
  /** Scopes the presented token carries; a route's required scopes are checked against these. */
  scopes?: readonly string[]
  /** The database id of the token that authenticated the request, when the provider has one. */
  tokenId?: string | number
}

export interface TokenAuthUserTypes {}

export type TokenAuthUser = TokenAuthUserTypes extends { user: infer U } ? U : DefaultTokenAuthUser

/**
 * Resolves a bearer token to a user.
 * - return (or resolve to) the user when the token is good;
 * - return `null` when the token is unknown, expired or revoked (answered 401 invalid_token);
 * - throw (or reject) when it cannot tell, e.g. the database is down (answered 503, never 401 or 200);
 *   TokenAuthUnavailableError (errors.ts) lets it suggest a Retry-After.
 * A synchronous return skips a promise on the hot path; both are accepted.
 */
export interface TokenAuthProvider {
  getUser (token: string, request: FastifyRequest): TokenAuthUser | null | Promise<TokenAuthUser | null>
  /** Awaited when the plugin is registered (e.g. until a LISTEN is in place). */
  ready? (): void | Promise<void>
  /** Called when the Fastify instance closes: release pools, listeners, timers. */
  close? (): void | Promise<void>
}

/** The option check for a provider: an object with a getUser method. */
export const providerCheck = satisfies<TokenAuthProvider>(
  (v) => typeof (v as TokenAuthProvider | null)?.getUser === 'function',
  'a provider (an object with a getUser(token, request) method)')
