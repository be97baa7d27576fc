// The plugin's public types and what it adds to Fastify's (declaration merging).
import type { onRequestHookHandler } from 'fastify'
import type { DrizzleTokenAuthProviderOptions, DrizzleTokenAuthProvider } from './providers/drizzle.js'
import type { TokenAuthProvider, TokenAuthUser } from './providers/provider.js'
import type { LoginRoutesOptions } from './routes/options.js'
import type { ListenFn, TokenAuthDatabase } from './store/database.js'
import type { ReplicaSet } from './store/replicas.js'
import type { TokenService, TokenServiceOptions } from './store/service.js'
import type { Maintenance } from './store/maintenance.js'
import type { MetricsSnapshot } from './metrics.js'

export interface TokenAuthOptions {
  /** Where tokens are resolved; an array is tried in order (see ChainTokenAuthProvider). With
   * `database`, the database provider is tried first: its format check passes other tokens on. */
  provider?: TokenAuthProvider | readonly TokenAuthProvider[]
  /** The token store (`createDatabase()`'s result, migrated). Enables the database provider, the
   * TokenService (`fastify.tokenAuth.service`) and the /login and /logout routes. */
  database?: { db: TokenAuthDatabase, listen?: ListenFn, url?: string, replicas?: ReplicaSet }
  /** Options of the default DrizzleTokenAuthProvider (cache, lastUsedInterval, queryTimeout). */
  drizzle?: Omit<DrizzleTokenAuthProviderOptions, 'db' | 'listen' | 'service' | 'prefix' | 'notifyChannel' | 'replicas'>
  /** Options of the TokenService made on `database` (token prefix, scrypt parameters, NOTIFY channel). */
  service?: TokenServiceOptions
  /** The /login, /logout and /logout/all routes (with `database`); `false` registers none. */
  routes?: LoginRoutesOptions | false
  /** Guard every route of the context the plugin is registered in (routes declared later and by other
   * plugins, and the 404 handler), not only those that ask. Default false. */
  global?: boolean
  /** With `global`: route URL patterns left public, exact (`'/health'`) or a prefix (`'/docs/*'`). */
  exclude?: readonly string[]
  /** The realm in `WWW-Authenticate: Bearer realm="..."`. Default `api`. */
  realm?: string
  /** Name of the instance decorator that guards routes. Default `auth` (rename beside @fastify/auth). */
  authDecorator?: string
  /** Name of the request property holding the user. Default `user` (rename beside @fastify/jwt). */
  userProperty?: string
  /** Longest token accepted, in characters; longer is a malformed request. Default 1024. */
  maxTokenLength?: number
  /** Unknown tokens allowed per client address per window before it gets 429 without a lookup;
   * `false`: no limit. Default `{ max: 100, timeWindow: 60000 }`. */
  invalidTokens?: { max?: number, timeWindow?: number, addresses?: number } | false
  /** The server's housekeeping with `database`: expired tokens pruned, ended throttle windows and old
   * events deleted, every `interval` ms, one process at a time. Default `{ interval: 600000 }`; `false`: none. */
  maintenance?: { interval?: number } | false
  /** Seconds sent in `Retry-After` when the provider is unavailable. Default 5. */
  retryAfter?: number
}

/**
 * The options an app shares between the plugin and the CLI: a module whose default export is this,
 * spread into the plugin's options (`{ database, ...config }`) and given to `fastify-token-auth --config`.
 */
export interface TokenAuthConfig {
  /** The TokenService's options: the token prefix, the password cost, the app's own users. */
  service?: TokenServiceOptions
}

/** Per-route settings, under the route's `config.tokenAuth`. */
export type TokenAuthRouteConfig = false | {
  /** The token must carry every one of these scopes (403 insufficient_scope otherwise). */
  scopes?: readonly string[]
  /** Resolve this route's tokens with another provider (e.g. a SecretTokenAuthProvider guarding /login). */
  provider?: TokenAuthProvider
}

/** `fastify.tokenAuth`: the store the plugin made on its `database` (nulls without one), and its counters. */
export interface TokenAuthDecorator {
  /** The TokenService on `database`; null when the plugin was given no `database`. */
  readonly service: TokenService | null
  /** The database provider on `database`; null when the plugin was given no `database`. */
  readonly provider: DrizzleTokenAuthProvider | null
  /** The housekeeping rounds (pruning expired tokens...), `run()` for one now; null without `database` or with `maintenance: false`. */
  readonly maintenance: Maintenance | null
  /** The counters so far: logins, requests by outcome, cache and lookups, tokens (metrics.ts). */
  metrics: () => MetricsSnapshot
}

/**
 * The decorator names the types declare. An app that renames them (beside @fastify/jwt's `user` or
 * @fastify/auth's `auth`) says so here, and the types follow:
 *
 *   declare module 'fastify-token-auth' {
 *     interface TokenAuthDecoratorNames { userProperty: 'tokenUser', authDecorator: 'bearer' }
 *   }
 */
export interface TokenAuthDecoratorNames {}
type UserKey = TokenAuthDecoratorNames extends { userProperty: infer K extends string } ? K : 'user'
type AuthKey = TokenAuthDecoratorNames extends { authDecorator: infer K extends string } ? K : 'auth'
/** `request.user` (or the renamed property): the user the bearer token resolved to, or null. */
export type TokenAuthRequestDecorators = { [K in UserKey]: TokenAuthUser | null }
/** `fastify.auth` (or the renamed guard): rejects a request whose token did not resolve (401/400/403/503). */
export type TokenAuthInstanceDecorators = { [K in AuthKey]: onRequestHookHandler }

declare module 'fastify' {
  interface FastifyRequest extends TokenAuthRequestDecorators {}
  interface FastifyInstance extends TokenAuthInstanceDecorators {
    /** The token service and database provider the plugin made on its `database` (else nulls). */
    tokenAuth: TokenAuthDecorator
  }
  interface FastifyContextConfig {
    /** `false`: this route does not read tokens at all. `{ scopes }`: the token must carry all of them. */
    tokenAuth?: TokenAuthRouteConfig
  }
}
