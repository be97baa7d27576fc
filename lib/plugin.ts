// The plugin: options, decorators, the per-route onRequest hook that resolves the token, and
// `fastify.auth`, which turns an unresolved token into the right RFC 6750 answer.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { MALFORMED, hasDuplicateAuthorization, parseBearer } from './header.js'
import {
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE, FST_TOKEN_AUTH_INVALID_REQUEST, FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_MISSING, FST_TOKEN_AUTH_UNAVAILABLE, assertQuotable, challenge, describeFailure
} from './errors.js'
import { isScopeToken } from './grammar.js'
import { ChainTokenAuthProvider } from './providers/chain.js'
import { DrizzleTokenAuthProvider, type DrizzleTokenAuthProviderOptions } from './providers/drizzle.js'
import { loginRoutes, resolveLoginRoutesOptions, type LoginRoutesOptions } from './routes/login.js'
import type { ListenFn, TokenAuthDatabase } from './store/database.js'
import { TokenService, type TokenServiceOptions } from './store/service.js'
import { TokenAuthUnavailableError, type TokenAuthProvider, type TokenAuthUser } from './providers/provider.js'

export interface TokenAuthOptions {
  /** Where tokens are resolved; an array is tried in order (see ChainTokenAuthProvider). With
   * `database`, the database provider is tried first: its format check passes other tokens on. */
  provider?: TokenAuthProvider | readonly TokenAuthProvider[]
  /** The token store (`createDatabase()`'s result, migrated). Enables the database provider, the
   * TokenService (`fastify.tokenAuth.service`) and the /login and /logout routes. */
  database?: { db: TokenAuthDatabase, listen?: ListenFn }
  /** Options of the default DrizzleTokenAuthProvider (cache, lastUsedInterval, queryTimeout). */
  drizzle?: Omit<DrizzleTokenAuthProviderOptions, 'db' | 'listen' | 'service' | 'prefix' | 'notifyChannel'>
  /** Options of the TokenService made on `database` (token prefix, scrypt parameters, NOTIFY channel). */
  service?: TokenServiceOptions
  /** The /login, /logout and /logout/all routes (with `database`); `false` registers none. */
  routes?: LoginRoutesOptions | false
  /** The realm in `WWW-Authenticate: Bearer realm="..."`. Default `api`. */
  realm?: string
  /** Name of the instance decorator that guards routes. Default `auth` (rename beside @fastify/auth). */
  authDecorator?: string
  /** Name of the request property holding the user. Default `user` (rename beside @fastify/jwt). */
  userProperty?: string
  /** Longest token accepted, in characters; longer is a malformed request. Default 1024. */
  maxTokenLength?: number
  /** Seconds sent in `Retry-After` when the provider is unavailable. Default 5. */
  retryAfter?: number
}

/** Per-route settings, under the route's `config.tokenAuth`. */
export type TokenAuthRouteConfig = false | {
  /** The token must carry every one of these scopes (403 insufficient_scope otherwise). */
  scopes?: readonly string[]
  /** Resolve this route's tokens with another provider (e.g. a SecretTokenAuthProvider guarding /login). */
  provider?: TokenAuthProvider
}

/** What `fastify.tokenAuth` holds when the plugin was given a `database`. */
export interface TokenAuthDecorator {
  service: TokenService
  provider: DrizzleTokenAuthProvider
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
    /** The token service and database provider, when the plugin was given a `database`. */
    tokenAuth: TokenAuthDecorator
  }
  interface FastifyContextConfig {
    /** `false`: this route does not read tokens at all. `{ scopes }`: the token must carry all of them. */
    tokenAuth?: TokenAuthRouteConfig
  }
}

// Why a request has no user. Kept as a small integer on the request (set in the hook, read by auth).
const OK = 0
const INVALID_TOKEN = 3
const UNAVAILABLE = 4
const INSUFFICIENT_SCOPE = 5
// The resolver never ran (an opted-out route, one registered before the plugin, the 404 handler, a
// global onRequest guard, a preflight): fastify.auth still says no, as for missing credentials.
const NOT_RESOLVED = 6
const ROUTE_KEYS = new Set(['scopes', 'provider'])

const kReason = Symbol('tokenAuth.reason')
const kDetail = Symbol('tokenAuth.detail')
type TokenAuthRequest = FastifyRequest & { [kReason]: number, [kDetail]: unknown }

function tokenAuth (fastify: FastifyInstance, opts: TokenAuthOptions, done: (err?: Error) => void): void {
  // avvio does not catch a synchronous throw from a callback-style plugin: it would surface as an
  // uncaughtException and crash the process. Bad options and decorator clashes must reject register().
  let ready: Promise<unknown>
  try {
    ready = setup(fastify, opts)
  } catch (err) {
    done(err as Error)
    return
  }
  ready.then(() => done(), done)
}

const OPTION_KEYS = new Set([
  'provider', 'database', 'drizzle', 'service', 'routes', 'realm', 'authDecorator', 'userProperty', 'maxTokenLength', 'retryAfter'
])
// What Fastify's register() itself takes, passed along in the same object.
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

function setup (fastify: FastifyInstance, opts: TokenAuthOptions): Promise<unknown> {
  // A misspelt option (`rotues: false`) must not silently leave the default in place.
  for (const key of Object.keys(opts)) {
    if (!OPTION_KEYS.has(key) && !REGISTER_KEYS.has(key)) throw new TypeError(`fastify-token-auth: unknown option '${key}' (known: ${[...OPTION_KEYS].join(', ')})`)
  }
  const realm = opts.realm ?? 'api'
  assertQuotable('realm', realm)
  const authName = opts.authDecorator ?? 'auth'
  const userKey = opts.userProperty ?? 'user'
  if (fastify.hasRequestDecorator(kReason)) {
    throw new Error('fastify-token-auth: the plugin is already registered here (it is global, through fastify-plugin): register it once')
  }
  // Fastify's own message for a clash does not say which option renames ours.
  if (fastify.hasDecorator(authName)) {
    throw new Error(`fastify-token-auth: fastify.${authName} is already decorated (by @fastify/auth?); pick another name with the \`authDecorator\` option`)
  }
  if (fastify.hasRequestDecorator(userKey)) {
    throw new Error(`fastify-token-auth: request.${userKey} is already decorated (by @fastify/jwt?); pick another name with the \`userProperty\` option`)
  }
  const maxTokenLength = opts.maxTokenLength ?? 1024
  if (!Number.isInteger(maxTokenLength) || maxTokenLength < 1) throw new TypeError('fastify-token-auth: maxTokenLength must be a positive integer')
  const retryAfter = opts.retryAfter ?? 5
  if (!Number.isInteger(retryAfter) || retryAfter < 0) throw new TypeError('fastify-token-auth: retryAfter must be a whole number of seconds')
  // Checked before the store opens anything (a LISTEN), so bad route options leave nothing running.
  if (opts.database !== undefined && opts.routes !== false) resolveLoginRoutesOptions(opts.routes ?? {})
  let store: TokenAuthDecorator | undefined
  if (opts.database !== undefined) {
    const service = new TokenService(opts.database, opts.service)
    store = {
      service,
      provider: new DrizzleTokenAuthProvider({
        ...opts.drizzle,
        db: opts.database.db,
        listen: opts.database.listen,
        service,
        prefix: service.prefix,
        notifyChannel: service.notifyChannel
      })
    }
    fastify.decorate('tokenAuth', store)
  }
  const given = opts.provider === undefined || opts.provider === null ? [] : ([] as TokenAuthProvider[]).concat(opts.provider)
  // The database provider goes first: its format check refuses any other token synchronously and
  // without a query, while a secret list would hash every database token before passing it on.
  const provider = toProvider(store === undefined ? given : [store.provider, ...given], 'the `provider` option (or `database`) is required')

  // The challenges never change for an instance, so the header objects are built once.
  const missingHeaders = { 'www-authenticate': challenge(realm) }
  const invalidRequestHeaders = { 'www-authenticate': challenge(realm, 'invalid_request') }
  const invalidTokenHeaders = { 'www-authenticate': challenge(realm, 'invalid_token') }
  const unavailableHeaders = { 'retry-after': String(retryAfter) }

  fastify.decorateRequest(userKey, null)
  fastify.decorateRequest(kReason, NOT_RESOLVED)
  fastify.decorateRequest(kDetail, null)

  function accept (request: TokenAuthRequest, user: unknown, scopes: readonly string[] | undefined, scopeHeaders: unknown): void {
    // Only an object is a user: null and undefined are "unknown", and so is anything else a careless
    // provider returns (`false` from `map.has(t) && map.get(t)`), rather than a "yes".
    if (user === null || typeof user !== 'object') {
      request[kReason] = INVALID_TOKEN
      return
    }
    (request as unknown as Record<string, unknown>)[userKey] = user
    if (scopes === undefined || hasScopes(user, scopes)) {
      request[kReason] = OK
    } else {
      request[kReason] = INSUFFICIENT_SCOPE
      request[kDetail] = scopeHeaders
    }
  }

  // One error line a second at most: during an outage every request fails the same way.
  let lastFailureLog = 0
  let unloggedFailures = 0
  function fail (request: TokenAuthRequest, err: unknown): void {
    request[kReason] = UNAVAILABLE
    request[kDetail] = err
    const now = Date.now()
    if (now - lastFailureLog < 1000) {
      unloggedFailures++
      return
    }
    lastFailureLog = now
    request.log.error({ failure: describeFailure(err), alsoFailedSinceLastLog: unloggedFailures }, 'fastify-token-auth: token provider failed')
    unloggedFailures = 0
  }

  function makeResolver (provider: TokenAuthProvider, scopes?: readonly string[], scopeHeaders?: Record<string, string>): onRequestHookHandler {
    return function resolveToken (req: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
      const request = req as TokenAuthRequest
      const raw = request.raw
      // A CORS preflight carries no credentials by design; leave it to the CORS plugin.
      if (raw.method === 'OPTIONS' && raw.headers['access-control-request-method'] !== undefined) return next()
      const value = raw.headers.authorization
      // Two credentials are ambiguous whatever their schemes (Node keeps only the first in `headers`).
      if (value !== undefined && hasDuplicateAuthorization(raw.rawHeaders)) {
        request[kReason] = MALFORMED
        return next()
      }
      const token = parseBearer(value, maxTokenLength)
      if (typeof token !== 'string') {
        request[kReason] = token
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
          (user) => { settle(request, user, scopes, scopeHeaders); next() },
          (err) => { fail(request, err); next() }
        )
        return
      }
      settle(request, result, scopes, scopeHeaders)
      next()
    }
  }

  /** accept(), with a throwing user object (a getter on `scopes`) counted as the provider failing. */
  function settle (request: TokenAuthRequest, user: unknown, scopes: readonly string[] | undefined, scopeHeaders: unknown): void {
    try {
      accept(request, user, scopes, scopeHeaders)
    } catch (err) {
      fail(request, err)
    }
  }

  const resolveToken = makeResolver(provider)

  function auth (this: FastifyInstance, req: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
    const request = req as TokenAuthRequest
    const reason = request[kReason]
    if (reason === OK) return next()
    if (reason === NOT_RESOLVED && !warnedNotResolved) {
      warnedNotResolved = true
      request.log.warn(`fastify-token-auth: ${authName} ran where no token was read (${request.method} ${request.routeOptions.url ?? request.url}): ` +
        'a route with config.tokenAuth false or registered before the plugin, the 404 handler, or a global onRequest hook. ' +
        'Guard routes with a route-level hook, or globally with addHook(\'preHandler\', ...)')
    }
    next(rejection(reason, request[kDetail]))
  }

  function rejection (reason: number, detail: unknown): Error {
    let err: Error & { headers?: Record<string, string> }
    switch (reason) {
      case MALFORMED:
        err = new FST_TOKEN_AUTH_INVALID_REQUEST()
        err.headers = invalidRequestHeaders
        break
      case INVALID_TOKEN:
        err = new FST_TOKEN_AUTH_INVALID_TOKEN()
        err.headers = invalidTokenHeaders
        break
      case INSUFFICIENT_SCOPE:
        err = new FST_TOKEN_AUTH_INSUFFICIENT_SCOPE()
        err.headers = detail as Record<string, string>
        break
      case UNAVAILABLE:
        err = new FST_TOKEN_AUTH_UNAVAILABLE()
        err.headers = detail instanceof TokenAuthUnavailableError && detail.retryAfter !== undefined && detail.retryAfter !== retryAfter
          ? { 'retry-after': String(detail.retryAfter) }
          : unavailableHeaders
        break
      default:
        err = new FST_TOKEN_AUTH_MISSING()
        err.headers = missingHeaders
    }
    return err
  }

  let warnedNotResolved = false
  fastify.decorate(authName, auth)

  // The resolver is attached per route rather than as a global hook: a route that opts out pays
  // nothing, and a route's scopes are known here, once, instead of being read on every request.
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.tokenAuth
    if (config === false) return
    const where = `config.tokenAuth of ${route.method} ${route.url}`
    if (config !== undefined && (typeof config !== 'object' || config === null)) {
      throw new TypeError(`fastify-token-auth: ${where} must be false or { scopes, provider }`)
    }
    // A misspelt key (`scope`) must not silently leave the route open.
    for (const key of Object.keys(config ?? {})) {
      if (!ROUTE_KEYS.has(key)) throw new TypeError(`fastify-token-auth: ${where} has an unknown key '${key}' (known: scopes, provider)`)
    }
    const scopes = config?.scopes
    const routeProvider = config?.provider === undefined ? provider : toProvider(config.provider, `${where}: provider is not a provider`)
    const hooks: onRequestHookHandler[] = []
    if (scopes !== undefined && !(Array.isArray(scopes) && scopes.every(isScopeToken))) {
      throw new TypeError(`fastify-token-auth: ${where}: scopes must be an array of RFC 6749 scope tokens`)
    }
    if (scopes !== undefined && scopes.length > 0) {
      const required = Object.freeze([...scopes])
      const scopeHeaders = { 'www-authenticate': challenge(realm, 'insufficient_scope', required) }
      // A route that names scopes is guarded even if it forgot `preHandler: fastify.auth`.
      hooks.push(makeResolver(routeProvider, required, scopeHeaders), auth)
    } else {
      hooks.push(routeProvider === provider ? resolveToken : makeResolver(routeProvider))
    }
    const existing = route.onRequest
    route.onRequest = existing === undefined ? hooks : hooks.concat(existing as onRequestHookHandler | onRequestHookHandler[])
  })

  // The routes need the plugin's guard, where it puts the user, and its Retry-After for a store outage.
  if (store !== undefined && opts.routes !== false) {
    loginRoutes(fastify, { ...opts.routes, service: store.service, auth, userProperty: userKey, retryAfter })
  }

  if (provider.close !== undefined) {
    fastify.addHook('onClose', async () => { await provider.close?.() })
  }
  return Promise.resolve(provider.ready?.())
}

function toProvider (value: TokenAuthProvider | readonly TokenAuthProvider[] | undefined | null, missing: string): TokenAuthProvider {
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) throw new TypeError(`fastify-token-auth: ${missing}`)
  const provider = Array.isArray(value)
    ? (value.length === 1 ? value[0] : new ChainTokenAuthProvider(value))
    : value as TokenAuthProvider
  if (typeof provider?.getUser !== 'function') throw new TypeError('fastify-token-auth: a provider must have a getUser(token, request) method')
  return provider
}

function hasScopes (user: object, required: readonly string[]): boolean {
  const have = (user as { scopes?: unknown }).scopes
  // An array only: a space-separated string would match scopes as substrings ('notadmin' has 'admin').
  if (!Array.isArray(have)) return false
  for (const scope of required) if (!have.includes(scope)) return false
  return true
}

export default fp(tokenAuth, { fastify: '5.x', name: 'fastify-token-auth' })
