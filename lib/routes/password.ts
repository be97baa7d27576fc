/**
 * POST /password: the user of the presented token changes their password, giving the current one.
 * The user's other tokens are revoked (`service.revokeOnPasswordChange`, default true), the one the
 * change was made with is kept. The current password is checked like a login (throttled, in the fair
 * password queue), so a stolen token is no way to guess it. For the plugin's own users only: with the
 * app's own (appUsers), the app changes passwords and calls service.passwordChanged(id).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { FST_TOKEN_AUTH_BAD_CREDENTIALS } from '../errors.js'
import { PASSWORD_MAX_LENGTH } from '../store/passwords.js'
import { bodySchema, bodyValidator } from './body.js'
import type { RoutesContext } from './context.js'
import type { CredentialsCheck } from './login.js'
import { bodyResponses, errorResponse, securityOf } from './schemas.js'

const FIELDS = {
  password: { type: 'string', min: 1, max: PASSWORD_MAX_LENGTH, required: true, format: 'password', description: 'The current password' },
  newPassword: { type: 'string', min: 1, max: PASSWORD_MAX_LENGTH, required: true, format: 'password' }
} as const

export function passwordRoute (child: FastifyInstance, ctx: RoutesContext, url: string, check: CredentialsCheck): void {
  const { service, options: o, storeCall, storeUser } = ctx
  child.route({
    method: 'POST',
    url,
    config: { tokenAuth: o.manageScope === null ? {} : { scopes: [o.manageScope] } },
    onRequest: o.manageScope === null ? ctx.auth : undefined,
    validatorCompiler: bodyValidator(FIELDS),
    schema: {
      tags: ['auth'],
      summary: 'Change your password (your other tokens are revoked)',
      ...securityOf(o.securityScheme, true),
      body: bodySchema(FIELDS),
      response: {
        200: { description: 'Changed', type: 'object', properties: { revoked: { type: 'integer', description: 'Your other tokens, revoked' } } },
        400: errorResponse('Malformed body, or a new password that breaks the rules'),
        401: errorResponse('A wrong current password, or a missing, unknown or revoked token'),
        403: errorResponse('The token lacks the scope to manage tokens, or does not come from the token store'),
        ...bodyResponses,
        429: errorResponse('Too many failed attempts (see Retry-After)'),
        503: errorResponse('The token store is unavailable (see Retry-After)')
      }
    } as FastifySchema,
    handler: async function changePassword (request: FastifyRequest, reply: FastifyReply) {
      const user = storeUser(request)
      const body = request.body as { password: string, newPassword: string }
      const username = String((user as { username?: unknown }).username)
      const checked = await check(request, username, body.password)
      // The same account, not merely the same name (a user renamed since the token was issued).
      if (checked === null || String(checked.id) !== String(user.id)) throw new FST_TOKEN_AUTH_BAD_CREDENTIALS()
      const { revoked } = await storeCall(request, 'change password', service.setPassword(username, body.newPassword, { exceptTokenId: user.tokenId }))
      reply.header('cache-control', 'no-store')
      return { revoked }
    }
  })
}
