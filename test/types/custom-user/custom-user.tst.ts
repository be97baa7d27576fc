// An app names its own user type, exactly as the README tells it to: by augmenting TokenAuthUserTypes.
// ('fastify-token-auth' maps to lib/index.ts through this folder's tsconfig `paths`.)
import Fastify, { type FastifyRequest } from 'fastify'
import { expect, test } from 'tstyche'
import tokenAuth, { type TokenAuthProvider, type TokenAuthUser } from 'fastify-token-auth'

interface AppUser { id: number, username: string, email: string, scopes: string[], tokenId: number }

declare module 'fastify-token-auth' {
  interface TokenAuthUserTypes { user: AppUser }
}

test('request.user is the app user', async () => {
  expect<TokenAuthUser>().type.toBe<AppUser>()
  expect<FastifyRequest['user']>().type.toBe<AppUser | null>()
  const app = Fastify()
  const provider: TokenAuthProvider = {
    async getUser (token) { return token === 'x' ? { id: 1, username: 'x', email: 'x@example.com', scopes: [], tokenId: 9 } : null }
  }
  await app.register(tokenAuth, { provider })
  app.get('/me', { preHandler: app.auth }, async (request) => {
    expect(request.user?.email).type.toBe<string | undefined>()
    return request.user?.email
  })
})

test('a provider must return the app user', () => {
  // @ts-expect-error Type '{ id: number; username: string; }' is not assignable to type 'AppUser
  const wrong: TokenAuthProvider = { getUser: () => ({ id: 1, username: 'x' }) }
  expect(wrong).type.toBe<TokenAuthProvider>()
})
