// The plugin: options, decorators, the per-route onRequest hook that resolves the token, and
// `fastify.auth`, which turns an unresolved token into the right RFC 6750 answer.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { MALFORMED, MISSING, hasDuplicateAuthorization, parseBearer } from './header.js'
import {
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE, FST_TOKEN_AUTH_INVALID_REQUEST, FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_MISSING, FST_TOKEN_AUTH_UNAVAILABLE, assertQuotable, challenge
} from './errors.js'
import { ChainTokenAuthProvider } from './providers/chain.js'
import { DrizzleTokenAuthProvider, type DrizzleTokenAuthProviderOptions } from './providers/drizzle.js'
import { loginRoutes, resolveLoginRoutesOptions, type LoginRoutesOptions } from './routes/login.js'
import type { ListenFn, TokenAuthDatabase } from './store/database.js'
import { TokenService, type TokenServiceOptions } from './store/service.js'
import { TokenAuthUnavailableError, type TokenAuthProvider, type TokenAuthUser } from './providers/provider.js'

export interface TokenAuthOptions {
  /** Where tokens are resolved; an array is tried in order (see ChainTokenAuthProvider). With
   * `database`, the database provider is tried after these (e.g. secret service tokens, then users'). */
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
const NOT_RESOLVED = MISSING // also the value for routes that opted out: auth must still say no
const INVALID_TOKEN = 3
const UNAVAILABLE = 4
const INSUFFICIENT_SCOPE = 5

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

function setup (fastify: FastifyInstance, opts: TokenAuthOptions): Promise<unknown> {
  const realm = opts.realm ?? 'api'
  assertQuotable('realm', realm)
  const authName = opts.authDecorator ?? 'auth'
  const userKey = opts.userProperty ?? 'user'
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
  const provider = toProvider(store === undefined ? given : [...given, store.provider], 'the `provider` option (or `database`) is required')

  // The challenges never change for an instance, so the header objects are built once.
  const missingHeaders = { 'www-authenticate': challenge(realm) }
  const invalidRequestHeaders = { 'www-authenticate': challenge(realm, 'invalid_request') }
  const invalidTokenHeaders = { 'www-authenticate': challenge(realm, 'invalid_token') }
  const unavailableHeaders = { 'retry-after': String(retryAfter) }

  fastify.decorateRequest(userKey, null)
  fastify.decorateRequest(kReason, NOT_RESOLVED)
  fastify.decorateRequest(kDetail, null)

  function accept (request: TokenAuthRequest, user: TokenAuthUser | null, scopes: readonly string[] | undefined): void {
    if (user === null || user === undefined) {
      request[kReason] = INVALID_TOKEN
      return
    }
    (request as unknown as Record<string, unknown>)[userKey] = user
    request[kReason] = scopes === undefined || hasScopes(user, scopes) ? OK : INSUFFICIENT_SCOPE
  }

  function fail (request: TokenAuthRequest, err: unknown): void {
    request[kReason] = UNAVAILABLE
    request[kDetail] = err
    request.log.error({ err }, 'fastify-token-auth: token provider failed')
  }

  function makeResolver (scopes: readonly string[] | undefined, provider: TokenAuthProvider): onRequestHookHandler {
    return function resolveToken (req: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
      const request = req as TokenAuthRequest
      const raw = request.raw
      // A CORS preflight carries no credentials by design; leave it to the CORS plugin.
      if (raw.method === 'OPTIONS' && raw.headers['access-control-request-method'] !== undefined) return next()
      const token = parseBearer(raw.headers.authorization, maxTokenLength)
      if (typeof token !== 'string') {
        request[kReason] = token
        return next()
      }
      if (hasDuplicateAuthorization(raw.rawHeaders)) {
        request[kReason] = MALFORMED
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
        (result as Promise<TokenAuthUser | null>).then(
          (user) => { accept(request, user, scopes); next() },
          (err) => { fail(request, err); next() }
        )
        return
      }
      accept(request, result as TokenAuthUser | null, scopes)
      next()
    }
  }

  const resolveToken = makeResolver(undefined, provider)

  function auth (this: FastifyInstance, req: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
    const request = req as TokenAuthRequest
    const reason = request[kReason]
    if (reason === OK) return next()
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
        err.headers = detail instanceof TokenAuthUnavailableError && detail.retryAfter !== retryAfter
          ? { 'retry-after': String(detail.retryAfter) }
          : unavailableHeaders
        break
      default:
        err = new FST_TOKEN_AUTH_MISSING()
        err.headers = missingHeaders
    }
    return err
  }

  fastify.decorate(authName, auth)

  // The resolver is attached per route rather than as a global hook: a route that opts out pays
  // nothing, and a route's scopes are known here, once, instead of being read on every request.
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.tokenAuth
    if (config === false) return
    if (config !== undefined && (typeof config !== 'object' || config === null)) {
      throw new TypeError(`fastify-token-auth: config.tokenAuth of ${route.method} ${route.url} must be false or { scopes }`)
    }
    const scopes = config?.scopes
    const routeProvider = config?.provider === undefined ? provider : toProvider(config.provider, `config.tokenAuth.provider of ${route.method} ${route.url} is not a provider`)
    const hooks: onRequestHookHandler[] = []
    if (scopes !== undefined && scopes.length > 0) {
      if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))) {
        throw new TypeError(`fastify-token-auth: config.tokenAuth.scopes of ${route.method} ${route.url} must be RFC 6749 scope tokens`)
      }
      const required = Object.freeze([...scopes])
      const scopeHeaders = { 'www-authenticate': challenge(realm, 'insufficient_scope', required) }
      const resolveScoped = makeResolver(required, routeProvider)
      // A route that names scopes is guarded even if it forgot `preHandler: fastify.auth`.
      hooks.push(function resolveWithScopes (req, reply, next) {
        (req as TokenAuthRequest)[kDetail] = scopeHeaders
        resolveScoped.call(this, req, reply, next)
      }, auth)
    } else {
      hooks.push(routeProvider === provider ? resolveToken : makeResolver(undefined, routeProvider))
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

function hasScopes (user: TokenAuthUser, required: readonly string[]): boolean {
  const have = (user as { scopes?: readonly string[] }).scopes
  if (have === undefined || have === null) return false
  for (const scope of required) if (!have.includes(scope)) return false
  return true
}

export default fp(tokenAuth, { fastify: '5.x', name: 'fastify-token-auth' })
