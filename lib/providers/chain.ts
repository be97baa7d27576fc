import type { FastifyRequest } from 'fastify'
import { arrayOf } from '../validate.js'
import { providerCheck, type TokenAuthProvider, type TokenAuthUser } from './provider.js'

type Result = TokenAuthUser | null | Promise<TokenAuthUser | null>

/**
 * Tries providers in order; the first user wins. A provider that fails does not stop the chain (a later
 * one may still know the token), but if no provider knows it and one of them failed, the chain fails:
 * "I could not check" must never turn into "unknown token".
 */
export class ChainTokenAuthProvider implements TokenAuthProvider {
  readonly #providers: readonly TokenAuthProvider[]

  constructor (providers: readonly TokenAuthProvider[]) {
    this.#providers = arrayOf(providerCheck, { min: 1, max: 1000, expected: 'an array of at least one provider' })(providers, 'ChainTokenAuthProvider')
  }

  getUser (token: string, request: FastifyRequest): Result {
    return this.#from(0, token, request, undefined)
  }

  #from (start: number, token: string, request: FastifyRequest, failure: unknown): Result {
    for (let i = start; i < this.#providers.length; i++) {
      let result: Result
      try {
        result = this.#providers[i].getUser(token, request)
      } catch (err) {
        failure ??= err
        continue
      }
      if (result != null && typeof (result as Promise<unknown>).then === 'function') {
        return Promise.resolve(result).then(
          (user) => isUser(user) ? user : this.#from(i + 1, token, request, failure),
          (err) => this.#from(i + 1, token, request, failure ?? err)
        )
      }
      // Only an object is a user: null, undefined (a Map's "unknown") or false try the next provider.
      if (isUser(result)) return result
    }
    if (failure !== undefined) throw failure
    return null
  }

  async ready (): Promise<void> {
    await Promise.all(this.#providers.map(async (p) => await p.ready?.()))
  }

  async close (): Promise<void> {
    await Promise.all(this.#providers.map(async (p) => await p.close?.()))
  }
}

function isUser (value: unknown): value is TokenAuthUser {
  return typeof value === 'object' && value !== null
}
