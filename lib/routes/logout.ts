/**
 * POST /logout (revoke the presented token) and POST /logout/all (every token of its user), with
 * their OpenAPI schemas; routes/plugin.ts registers them in the routes' own context.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { FST_TOKEN_AUTH_NOT_REVOCABLE } from '../errors.js'
import type { UserId } from '../users/user-source.js'
import type { RoutesContext } from './context.js'
import { errorResponse, securityOf } from './schemas.js'

const responses = {
  204: { description: 'Revoked', type: 'null' },
  400: errorResponse('Malformed Authorization header'),
  401: errorResponse('Missing, unknown, expired or revoked token'),
  403: errorResponse('The token does not come from the token store (e.g. a static secret token)'),
  503: errorResponse('The token store is unavailable (see Retry-After)')
}

function schema (summary: string, scheme: string | false): FastifySchema {
  return { tags: ['auth'], summary, ...securityOf(scheme, true), response: responses } as FastifySchema
}

/** Registers the logout routes whose paths are given (false: not registered). */
export function logoutRoutes (child: FastifyInstance, ctx: RoutesContext, logout: string | false, logoutAll: string | false): void {
  const { service, auth, storeCall, userProperty, options, fromStore } = ctx

  /** The user of the presented token, when the store resolved it (not a secret, or another provider's). */
  function storeUser (request: FastifyRequest): { id: UserId, tokenId: number } {
    const user = (request as unknown as Record<string, unknown>)[userProperty]
    if (!fromStore(user)) throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
    return user
  }

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
      onRequest: auth,
      handler: async function logoutAll (request: FastifyRequest, reply: FastifyReply) {
        const { id } = storeUser(request)
        await storeCall(request, 'logout', service.revokeAllTokens({ id }))
        return reply.code(204).send()
      }
    })
  }
}
