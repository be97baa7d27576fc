// Why a request has no user: one small integer kept on the request by the resolver and read by the
// guard. The header parser's two answers are its own constants (header.ts imports nothing), reused here.
import { MALFORMED, MISSING } from './header.js'

export const Reason = {
  /** A user was resolved, with every scope the route requires. */
  OK: 0,
  /** No usable credentials: no header, an empty one, or another scheme. */
  MISSING,
  /** Bearer credentials that break the grammar, are too long, or come twice. */
  MALFORMED,
  /** The provider does not know the token (unknown, expired, revoked, inactive user). */
  INVALID_TOKEN: 3,
  /** The provider could not tell (it threw: the database is down). */
  UNAVAILABLE: 4,
  /** A user, but without a scope the route requires. */
  INSUFFICIENT_SCOPE: 5,
  /** The resolver never ran: an opted-out route, one registered before the plugin, the 404 handler,
   * a global onRequest guard, a CORS preflight. The guard still says no, as for missing credentials. */
  NOT_RESOLVED: 6,
  /** The client's address sent too many unknown tokens lately (invalid-tokens.ts); the detail is the seconds to wait. */
  TOO_MANY_INVALID: 7
} as const

export type ReasonCode = typeof Reason[keyof typeof Reason]

/** Where the resolver leaves the reason (and, for a scope or outage, the headers or the error). */
export const kReason = Symbol('tokenAuth.reason')
export const kDetail = Symbol('tokenAuth.detail')
export type RequestState = { [kReason]: ReasonCode, [kDetail]: unknown }
