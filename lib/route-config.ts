/**
 * Each route's `config.tokenAuth`, read once when the route is declared (an onRoute hook), never per
 * request: `false` (the token is not read), `{ scopes }` (guarded, with the scopes required),
 * `{ provider }` (another provider). The hook puts the route's resolver (and guard) first in its
 * onRequest hooks.
 */
import type { onRequestHookHandler, RouteOptions } from 'fastify'
import { challenge } from './errors.js'
import { isScopeToken } from './grammar.js'
import { providerCheck, type TokenAuthProvider } from './providers/provider.js'
import { arrayOf, object, optional, optionError, orFalse, satisfies } from './validate.js'

const routeConfig = orFalse(object({
  scopes: optional(arrayOf(satisfies<string>(isScopeToken, 'an RFC 6749 scope token'), { max: 64, expected: 'an array of RFC 6749 scope tokens' })),
  provider: optional(providerCheck)
}, { expected: 'false or { scopes, provider }' }))

export interface RouteConfigContext {
  /** The plugin's provider, and the resolver on it every plain route shares. */
  provider: TokenAuthProvider
  resolve: onRequestHookHandler
  /** Makes a resolver on another provider and/or with required scopes. */
  makeResolver: (provider: TokenAuthProvider, scopes?: readonly string[], scopeHeaders?: Record<string, string>) => onRequestHookHandler
  auth: onRequestHookHandler
  realm: string
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
    if (config === false) return
    const provider = config.provider ?? ctx.provider
    const hooks: onRequestHookHandler[] = []
    if (config.scopes !== undefined && config.scopes.length > 0) {
      const scopeHeaders = { 'www-authenticate': challenge(ctx.realm, 'insufficient_scope', config.scopes) }
      // A route that names scopes is guarded even if it forgot `preHandler: fastify.auth`.
      hooks.push(ctx.makeResolver(provider, config.scopes, scopeHeaders), ctx.auth)
    } else {
      hooks.push(provider === ctx.provider ? ctx.resolve : ctx.makeResolver(provider))
    }
    const existing = route.onRequest
    route.onRequest = existing === undefined ? hooks : hooks.concat(existing as onRequestHookHandler | onRequestHookHandler[])
  }
}
