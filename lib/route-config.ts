/**
 * Each route's `config.tokenAuth`, read once when the route is declared (an onRoute hook), never per
 * request: `false` (the token is not read), `{ scopes }` (guarded, with the scopes required),
 * `{ provider }` (another provider). The hook puts the route's resolver (and guard) first in its
 * onRequest hooks.
 *
 * In global mode every route is guarded (resolver, then guard) unless it opts out or its URL pattern
 * is excluded; routes the hook never saw (declared before the plugin) and the 404 handler are guarded
 * by a context-level hook instead (`unseenGuard`). Exclusions match the route's pattern, never the
 * raw path: whatever `/docs/../x`, `//x` or `%2Fx` reaches, the route that runs is the one decided on.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, RouteOptions } from 'fastify'
import { challenge } from './errors.js'
import { isScopeToken } from './grammar.js'
import { providerCheck, type TokenAuthProvider } from './providers/provider.js'
import { arrayOf, object, optional, optionError, orFalse, satisfies, string } from './validate.js'

const routeConfig = orFalse(object({
  scopes: optional(arrayOf(satisfies<string>(isScopeToken, 'an RFC 6749 scope token'), { max: 64, expected: 'an array of RFC 6749 scope tokens' })),
  provider: optional(providerCheck)
}, { expected: 'false or { scopes, provider }' }))

/** `exclude`: route URL patterns left public in global mode, exact or with a trailing `*` (a prefix). */
export const excludeOption = arrayOf(string({
  pattern: /^\/[\x21-\x29\x2b-\x7e]*\*?$/,
  expected: 'a route URL, exact (\'/health\') or ending in * for a prefix (\'/docs/*\')'
}), { max: 1000, expected: 'an array of route URLs', default: [] })

/** True when the route URL pattern `url` is excluded by one of `patterns`. */
export function isExcluded (patterns: readonly string[], url: string): boolean {
  for (const p of patterns) {
    if (p.endsWith('*') ? url.startsWith(p.slice(0, -1)) : url === p) return true
  }
  return false
}

/** Marks a route's config once the onRoute hook has decided for it. */
const kSeen = Symbol.for('fastify-token-auth.seen')

export interface RouteConfigContext {
  /** The plugin's provider, and the resolver on it every plain route shares. */
  provider: TokenAuthProvider
  resolve: onRequestHookHandler
  /** Makes a resolver on another provider and/or with required scopes. */
  makeResolver: (provider: TokenAuthProvider, scopes?: readonly string[], scopeHeaders?: Record<string, string>) => onRequestHookHandler
  auth: onRequestHookHandler
  realm: string
  /** Global mode: every route guarded unless excluded. */
  global: boolean
  exclude: readonly string[]
  /** The OpenAPI security scheme put on routes' `schema.security` in global mode (false: none). */
  securityScheme: string | false
}

/** The onRoute hook attaching each route's resolver. */
export function routeConfigHook (ctx: RouteConfigContext): (route: RouteOptions) => void {
  return function tokenAuthOnRoute (route) {
    let config
    try {
      config = routeConfig(route.config?.tokenAuth, 'config.tokenAuth')
    } catch (err) {
      const e = err as Error & { option: string }
      throw optionError(e.option, `${String(route.method)} ${route.url}: ${e.message.replace(/^fastify-token-auth: /, '')}`)
    }
    if (ctx.global) route.config = { ...route.config, [kSeen]: true } as RouteOptions['config']
    const open = config === false || (ctx.global && isExcluded(ctx.exclude, route.url))
    if (ctx.global) markSecurity(route, ctx.securityScheme, !open)
    if (config === false || open) return
    const provider = config.provider ?? ctx.provider
    const hooks: onRequestHookHandler[] = []
    if (config.scopes !== undefined && config.scopes.length > 0) {
      const scopeHeaders = { 'www-authenticate': challenge(ctx.realm, 'insufficient_scope', config.scopes) }
      // A route that names scopes is guarded even if it forgot `preHandler: fastify.auth`.
      hooks.push(ctx.makeResolver(provider, config.scopes, scopeHeaders), ctx.auth)
    } else {
      hooks.push(provider === ctx.provider ? ctx.resolve : ctx.makeResolver(provider))
      if (ctx.global) hooks.push(ctx.auth)
    }
    const existing = route.onRequest
    route.onRequest = existing === undefined ? hooks : hooks.concat(existing as onRequestHookHandler | onRequestHookHandler[])
  }
}

/** OpenAPI: a guarded route requires the bearer scheme, an open one nothing (unless the route says). */
function markSecurity (route: RouteOptions, scheme: string | false, guarded: boolean): void {
  if (scheme === false) return
  const schema = (route.schema ?? {}) as Record<string, unknown>
  if (schema.security !== undefined) return
  route.schema = { ...schema, security: guarded ? [{ [scheme]: [] }] : [] } as RouteOptions['schema']
}

/**
 * Global mode, as a context-level onRequest hook: a request whose route the onRoute hook never saw
 * (declared before the plugin, or the 404 handler) is resolved and guarded here, unless it opts out.
 * An unknown path without a token is 401, not 404: route names do not leak.
 */
export function unseenGuard (ctx: RouteConfigContext): onRequestHookHandler {
  return function tokenAuthUnseenRoutes (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const config = request.routeOptions.config as unknown as Record<string | symbol, unknown> | undefined
    if (config?.[kSeen] === true) return done()
    const url = request.routeOptions.url
    if (config?.tokenAuth === false || (url !== undefined && isExcluded(ctx.exclude, url))) return done()
    ctx.resolve.call(this, request, reply, (err?: Error) => {
      if (err !== undefined) return done(err)
      ctx.auth.call(this, request, reply, done)
    })
  }
}
