/**
 * POST /logout (revoke the presented token) and POST /logout/all (every token of its user), with
 * their OpenAPI schemas; routes/plugin.ts registers them in the routes' own context.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import type { RoutesContext } from './context.js'
import { errorResponse, securityOf } from './schemas.js'

const responses = {
  204: { description: 'Revoked', type: 'null' },
  400: errorResponse('Malformed Authorization header'),
  401: errorResponse('Missing, unknown, expired or revoked token'),
  403: errorResponse('The token does not come from the token store (e.g. a static secret token), or (/logout/all) lacks the scope to manage tokens'),
  503: errorResponse('The token store is unavailable (see Retry-After)')
}

function schema (summary: string, scheme: string | false): FastifySchema {
  return { tags: ['auth'], summary, ...securityOf(scheme, true), response: responses } as FastifySchema
}

/** Registers the logout routes whose paths are given (false: not registered). */
export function logoutRoutes (child: FastifyInstance, ctx: RoutesContext, logout: string | false, logoutAll: string | false): void {
  const { service, auth, storeCall, options, storeUser } = ctx

  if (logout !== false) {
    child.route({
      method: 'POST',
      url: logout,
      schema: schema('Log out: revoke the token this request carries', options.securityScheme),
      onRequest: auth,
      handler: async function logout (request: FastifyRequest, reply: FastifyReply) {
        const { id, tokenId } = storeUser(request)
        // Idempotent: a token revoked meanwhile by a concurrent call is just as logged out.
        await storeCall(request, 'logout', service.revokeToken(tokenId, { userId: id }))
        return reply.code(204).send()
      }
    })
  }

  if (logoutAll !== false) {
    child.route({
      method: 'POST',
      url: logoutAll,
      schema: schema('Log out everywhere: revoke every token of the user', options.securityScheme),
      // Like the token routes, it needs the scope to manage tokens: a narrow token cannot end the others.
      config: { tokenAuth: options.manageScope === null ? {} : { scopes: [options.manageScope] } },
      onRequest: options.manageScope === null ? auth : undefined,
      handler: async function logoutAll (request: FastifyRequest, reply: FastifyReply) {
        const { id } = storeUser(request)
        await storeCall(request, 'logout', service.revokeAllTokens({ id }))
        return reply.code(204).send()
      }
    })
  }
}
