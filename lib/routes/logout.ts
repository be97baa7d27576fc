/**
 * POST /logout (revoke the presented token) and POST /logout/all (every token of its user), with
 * their OpenAPI schemas; routes/plugin.ts registers them in the routes' own context.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { FST_TOKEN_AUTH_NOT_REVOCABLE } from '../errors.js'
import { parseBearer } from '../header.js'
import { checkTokenFormat, hashToken } from '../store/token-format.js'
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
  const { service, auth, storeCall, userProperty, options } = ctx

  /** The presented token, when it is one of the store's (else the request came with another provider's). */
  function storeToken (request: FastifyRequest): string {
    const token = parseBearer(request.raw.headers.authorization, 1 << 16)
    if (typeof token !== 'string' || !checkTokenFormat(token, service.prefix)) throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
    return token
  }

  if (logout !== false) {
    child.route({
      method: 'POST',
      url: logout,
      schema: schema('Log out: revoke the token this request carries', options.securityScheme),
      onRequest: auth,
      handler: async function logout (request: FastifyRequest, reply: FastifyReply) {
        const token = storeToken(request)
        // Idempotent: a token revoked meanwhile by a concurrent call is just as logged out.
        await storeCall(request, 'logout', service.revokeTokenByHash(hashToken(token)))
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
        storeToken(request)
        const user = (request as unknown as Record<string, unknown>)[userProperty] as { id?: unknown } | null
        if (typeof user?.id !== 'number') throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
        await storeCall(request, 'logout', service.revokeAllTokens(user.id))
        return reply.code(204).send()
      }
    })
  }
}
