/**
 * Self-service tokens, for the user of the presented token (like GitHub's and GitLab's personal
 * access tokens): GET lists theirs (never a token or a hash; the current one marked), POST makes a new
 * one (shown once) with scopes only from the caller's own, DELETE /:id revokes one of theirs (someone
 * else's is 404, not 403, so ids do not leak). The routes need `routes.manageScope` (default `tokens`,
 * which the tokens /login issues carry), so a narrow token cannot make or end others.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { challenge, FST_TOKEN_AUTH_INSUFFICIENT_SCOPE, FST_TOKEN_AUTH_TOKEN_NOT_FOUND, withHeaders } from '../errors.js'
import { MAX_EXPIRES_IN, MAX_SCOPES, TOKEN_NAME_MAX_LENGTH } from '../store/service.js'
import { bodySchema, bodyValidator } from './body.js'
import type { RoutesContext } from './context.js'
import { bodyResponses, errorResponse, securityOf } from './schemas.js'

const CREATE_FIELDS = {
  name: { type: 'string', min: 0, max: TOKEN_NAME_MAX_LENGTH, plain: true, description: 'What the token is for' },
  scopes: { type: 'scopes', max: MAX_SCOPES, description: 'Scopes of the new token, among the caller\'s own (default none)' },
  expiresIn: { type: 'integer', min: 1, max: MAX_EXPIRES_IN, description: 'Lifetime in seconds (default: the server\'s maximum, else never)' }
} as const

const tokenInfo = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    hint: { type: 'string', description: 'The visible start of the token, e.g. tat_AbC1' },
    scopes: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'string', format: 'date-time' },
    lastUsedAt: { type: 'string', format: 'date-time', nullable: true },
    expiresAt: { type: 'string', format: 'date-time', nullable: true },
    current: { type: 'boolean', description: 'The token of this request' }
  }
}

const common = {
  401: errorResponse('Missing, unknown, expired or revoked token'),
  403: errorResponse('The token lacks the scope to manage tokens, or does not come from the token store'),
  503: errorResponse('The token store is unavailable (see Retry-After)')
}

/** Registers GET and POST <url>, DELETE <url>/:id in `child`, the routes' context. */
export function tokenRoutes (child: FastifyInstance, ctx: RoutesContext, url: string): void {
  const { service, options: o, storeCall, storeUser, realm } = ctx
  const config = { tokenAuth: o.manageScope === null ? {} : { scopes: [o.manageScope] } }
  const onRequest = o.manageScope === null ? ctx.auth : undefined
  const security = securityOf(o.securityScheme, true)

  child.route({
    method: 'GET',
    url,
    config,
    onRequest,
    schema: { tags: ['tokens'], summary: 'Your tokens (never a token itself)', ...security, response: { 200: { type: 'array', items: tokenInfo }, ...common } } as FastifySchema,
    handler: async function listTokens (request: FastifyRequest) {
      const user = storeUser(request)
      const list = await storeCall(request, 'list tokens', service.listTokens({ id: user.id }))
      return list.map((tok) => ({ ...tok, current: tok.id === user.tokenId }))
    }
  })

  child.route({
    method: 'POST',
    url,
    config,
    onRequest,
    validatorCompiler: bodyValidator(CREATE_FIELDS),
    schema: {
      tags: ['tokens'],
      summary: 'A new token for you, shown once',
      ...security,
      body: bodySchema(CREATE_FIELDS),
      response: {
        201: {
          description: 'The new token (shown once: only its hash is kept)',
          type: 'object',
          properties: { token: { type: 'string' }, token_type: { type: 'string', enum: ['Bearer'] }, ...tokenInfo.properties }
        },
        400: errorResponse('Malformed body, or a lifetime over the server\'s maximum'),
        403: errorResponse('A scope the token lacks, the scope to manage tokens missing, a token not from the token store, or as many tokens as allowed (service.maxTokensPerUser)'),
        ...bodyResponses,
        401: common[401],
        503: common[503]
      }
    } as FastifySchema,
    handler: async function createToken (request: FastifyRequest, reply: FastifyReply) {
      const user = storeUser(request)
      const body = request.body as { name?: string, scopes?: string[], expiresIn?: number }
      const scopes = body.scopes ?? []
      const missing = scopes.filter((s) => !user.scopes.includes(s))
      if (missing.length > 0) {
        // Only scopes the caller holds: a token cannot make a wider one.
        throw withHeaders(new FST_TOKEN_AUTH_INSUFFICIENT_SCOPE(), { 'www-authenticate': challenge(realm, 'insufficient_scope', missing) })
      }
      const issued = await storeCall(request, 'create token', service.issueToken({ id: user.id }, { name: body.name, scopes, expiresIn: body.expiresIn, parentTokenId: user.tokenId }))
      reply.code(201).header('cache-control', 'no-store').header('pragma', 'no-cache')
      return { token: issued.token, token_type: 'Bearer', id: issued.id, name: issued.name, scopes: issued.scopes, expiresAt: issued.expiresAt, current: false }
    }
  })

  child.route({
    method: 'DELETE',
    url: `${url.replace(/\/$/, '')}/:id`,
    config,
    onRequest,
    schema: {
      tags: ['tokens'],
      summary: 'Revoke one of your tokens',
      ...security,
      params: { type: 'object', properties: { id: { type: 'string' } } },
      response: { 204: { description: 'Revoked', type: 'null' }, 404: errorResponse('No such token of yours'), ...common }
    } as FastifySchema,
    handler: async function revokeToken (request: FastifyRequest, reply: FastifyReply) {
      const user = storeUser(request)
      const text = (request.params as { id: string }).id
      const id = /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : NaN
      // Someone else's token is as unknown as one that does not exist: 404 either way.
      if (!Number.isSafeInteger(id) || !await storeCall(request, 'revoke token', service.revokeToken(id, { userId: user.id }))) {
        throw new FST_TOKEN_AUTH_TOKEN_NOT_FOUND()
      }
      return reply.code(204).send()
    }
  })
}
