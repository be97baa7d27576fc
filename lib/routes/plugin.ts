/**
 * The login and logout routes, in their own encapsulated context, which holds:
 * - a strict JSON body parser only (no text/plain, nor any parser the app added: 415) and a small
 *   body limit (413);
 * Every write goes through the TokenService.
 */
import type { FastifyInstance } from 'fastify'
import type { RoutesContext } from './context.js'
import { LOGIN_BODY_LIMIT, loginRoute } from './login.js'
import { logoutRoutes } from './logout.js'
import { passwordRoute } from './password.js'
import { tokenRoutes } from './tokens.js'

/** Registers the routes in a child context of `fastify` (so under the prefix the plugin was registered with). */
export function registerRoutes (fastify: FastifyInstance, ctx: RoutesContext): void {
  const { login, logout, logoutAll, tokens, password } = ctx.options
  // The password change is for the plugin's own users: the app's own change theirs.
  const changePassword = ctx.service.users.kind === 'builtin' ? password : false
  if (login === false && logout === false && logoutAll === false && tokens === false && changePassword === false) return
  fastify.register(async function tokenAuthRoutes (child) {
    // Only JSON, parsed the safe way (prototype poisoning refused), whatever parsers the app added.
    child.removeAllContentTypeParsers()
    child.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT }, child.getDefaultJsonParser('error', 'error'))
    const check = login !== false || changePassword !== false ? loginRoute(child, ctx, login) : undefined
    logoutRoutes(child, ctx, logout, logoutAll)
    if (tokens !== false) tokenRoutes(child, ctx, tokens)
    if (changePassword !== false && check !== undefined) passwordRoute(child, ctx, changePassword, check)
  })
}
