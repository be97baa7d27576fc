// An app with the plugin's token routes on a test's database, and the few steps tests take with it:
// make a user, log in, call a route with a token. Shared by the token lifecycle tests.
import type { Test } from 'tap'
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import tokenAuth, { type Database, type TokenAuthOptions } from '../../lib/index.js'
import type { TokenServiceOptions } from '../../lib/store/service.js'
import { FAST_PASSWORD_PARAMS } from './db.js'
import { bearer } from './http.js'

export const PASSWORD = 'correct horse battery staple'
let serial = 0

export interface TokenApps {
  /** A ready app with `GET /me` guarded; closed when the test ends. */
  build: (service?: Partial<TokenServiceOptions>, opts?: Partial<TokenAuthOptions>) => Promise<FastifyInstance>
}

/** `defaults` are the plugin options every app of this test gets (a test's own override them). */
export function tokenApps (t: Test, database: Database, defaults: Partial<TokenAuthOptions> = {}, passwordQueue = 100): TokenApps {
  return {
    async build (service = {}, opts = {}) {
      const app = Fastify()
      t.teardown(() => app.close())
      await app.register(tokenAuth, {
        database,
        service: { passwordParams: FAST_PASSWORD_PARAMS, passwordQueue, ...service },
        routes: { throttle: false },
        ...defaults,
        ...opts
      })
      app.get('/me', { preHandler: app.auth }, async (request) => request.user)
      await app.ready()
      return app
    }
  }
}

/** A new user of the plugin's users table, made through this app's service. */
export async function user (app: FastifyInstance): Promise<{ name: string, id: number }> {
  const name = `user${++serial}`
  const made = await app.tokenAuth.service!.createUser(name, PASSWORD)
  return { name, id: made.id as number }
}

/** POST /login; the token (throws unless 200). */
export async function login (app: FastifyInstance, username: string, password = PASSWORD): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/login', payload: { username, password } })
  if (res.statusCode !== 200) throw new Error(`login: ${res.statusCode} ${res.body}`)
  return res.json().token
}

/** A request with `Authorization: Bearer <token>`. */
export async function call (app: FastifyInstance, token: string, method: InjectOptions['method'], url: string, payload?: unknown): Promise<LightMyRequestResponse> {
  return await app.inject({ method, url, headers: bearer(token), ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }) })
}
