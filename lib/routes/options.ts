// The `routes` option: the paths of every route group, each group's own options (beside its routes),
// and what they share. Resolved once, at registration, before the store opens anything.
import type { TokenAuthProvider } from '../providers/provider.js'
import { isScopeToken } from '../grammar.js'
import { ms, nullable, object, optionError, orFalse, satisfies, string, wraps, type Checked } from '../validate.js'
import { LOGIN_OPTIONS } from './login.js'
import type { LoginThrottleOptions } from './throttle.js'

export type { LoginThrottleOptions } from './throttle.js'

export interface LoginRoutesOptions {
  /** Path of the login route; `false` registers none. Default `/login`. */
  login?: string | false
  /** Path of the route revoking the presented token; `false` registers none. Default `/logout`. */
  logout?: string | false
  /** Path of the route revoking every token of the user; `false` registers none. Default `/logout/all`. */
  logoutAll?: string | false
  /** Path of the self-service token routes (GET and POST, DELETE /:id); `false` registers none. Default `/tokens`. */
  tokens?: string | false
  /** Path of the password change (the plugin's own users only); `false` registers none. Default `/password`. */
  password?: string | false
  /** The scope a token needs for /logout/all, the token routes and /password; the tokens /login issues
   * carry it. Default `tokens`; `null`: any token of the user may. */
  manageScope?: string | null
  /** A provider /login's request must pass (as `Authorization: Bearer <app token>`), e.g. a
   * SecretTokenAuthProvider holding the native app's token. Default: /login is open. */
  loginGuard?: TokenAuthProvider
  /** Lifetime of the tokens /login issues, in seconds; `null` (default): they never expire. */
  tokenExpiresIn?: number | null
  /** Scopes of the tokens /login issues. Default none. */
  tokenScopes?: readonly string[]
  /** Failed-login throttling per account and per IP (see throttle.ts); `false` turns it off. */
  throttle?: LoginThrottleOptions | false
  /** Name of the OpenAPI security scheme (`{ type: 'http', scheme: 'bearer' }`) the app declares in
   * @fastify/swagger's `components.securitySchemes`, put on the guarded routes' `security`. Default
   * `bearerAuth`; `false` leaves `security` out (for an app that declares no such scheme: @fastify/swagger
   * fails on a `security` naming an undeclared scheme). */
  securityScheme?: string | false
  /** Longest a route waits for the token store, in milliseconds (the password check included: it
   * reads the user), before answering 503 with Retry-After, e.g. when the database accepts
   * connections but never answers. Default 10,000. */
  timeout?: number
}

const path = (def: string) => orFalse(string({
  pattern: /^\/[\x21-\x7e]*$/,
  expected: 'a path starting with \'/\' (printable ASCII, no spaces) or false',
  default: def
}))

const shape = object({
  login: path('/login'),
  logout: path('/logout'),
  logoutAll: path('/logout/all'),
  tokens: path('/tokens'),
  password: path('/password'),
  manageScope: (value: unknown, at: string) => value === undefined ? 'tokens' : nullable(satisfies<string>(isScopeToken, 'an RFC 6749 scope token, or null'))(value, at),
  ...LOGIN_OPTIONS,
  securityScheme: orFalse(string({ pattern: /^\S+$/, expected: 'the name of an OpenAPI security scheme, or false', default: 'bearerAuth' })),
  timeout: ms(10_000)
}, { expected: 'an object or false' })

export type ResolvedRoutesOptions = Checked<typeof shape>

/** `routes` resolved (false: no route at all), with the paths checked to differ. */
export const routesOptions = orFalse(wraps(shape, (value, at): ResolvedRoutesOptions => {
  const o = shape(value, at)
  const paths = [o.login, o.logout, o.logoutAll, o.tokens, o.password].filter((p) => p !== false)
  if (new Set(paths).size !== paths.length) {
    throw optionError(`${at}.login`, `options ${at}.login, ${at}.logout, ${at}.logoutAll, ${at}.tokens and ${at}.password must differ, got ${paths.join(', ')}`)
  }
  return o
}))
