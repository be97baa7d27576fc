// Beside @fastify/jwt (request.user) and @fastify/auth (fastify.auth): the app renames our decorators
// at run time (userProperty, authDecorator) and tells the types the same names, and all three
// plugins' declarations live together in one compilation, with skipLibCheck off.
import Fastify, { type FastifyRequest, type onRequestHookHandler } from 'fastify'
import fastifyAuth from '@fastify/auth'
import fastifyJwt from '@fastify/jwt'
import { expect, test } from 'tstyche'
import tokenAuth, { SecretTokenAuthProvider, type DefaultTokenAuthUser } from 'fastify-token-auth'

declare module 'fastify-token-auth' {
  interface TokenAuthDecoratorNames { userProperty: 'tokenUser', authDecorator: 'bearer' }
}

test('renamed decorators are typed under their new names', async () => {
  const app = Fastify()
  await app.register(fastifyJwt, { secret: 'a-secret-of-some-length' })
  await app.register(fastifyAuth)
  await app.register(tokenAuth, {
    provider: new SecretTokenAuthProvider({ tokens: ['abc123'] }),
    userProperty: 'tokenUser',
    authDecorator: 'bearer'
  })
  expect(app.bearer).type.toBe<onRequestHookHandler>()
  expect<FastifyRequest['tokenUser']>().type.toBe<DefaultTokenAuthUser | null>()
  app.get('/either', { preHandler: app.auth([app.bearer]) }, async (request) => {
    expect(request.tokenUser).type.toBe<DefaultTokenAuthUser | null>()
    return request.tokenUser?.username
  })
  // @fastify/jwt keeps request.user, @fastify/auth keeps fastify.auth: ours no longer claims them.
  expect(app.auth).type.not.toBe<onRequestHookHandler>()
})
