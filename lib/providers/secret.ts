import { hash } from 'node:crypto'
import type { DefaultTokenAuthUser, TokenAuthProvider, TokenAuthUser } from './provider.js'

export interface SecretTokenEntry {
  token: string
  /** Defaults to `secret_token_user`, the seed's name. */
  username?: string
  scopes?: readonly string[]
}

export interface SecretTokenAuthProviderOptions {
  tokens: ReadonlyArray<string | SecretTokenEntry>
}

const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/
const WORDS = 8 // a SHA-256 digest is 8 32-bit words

/**
 * A fixed list of secrets, for internal services and for guarding /login from native apps.
 * Every configured secret is compared, in constant time, on every request: the presented token is
 * hashed (so its length does not matter), then XORed word by word against every stored digest with
 * no early exit.
 */
export class SecretTokenAuthProvider implements TokenAuthProvider {
  readonly #digests: Int32Array
  readonly #users: TokenAuthUser[]

  constructor (options: SecretTokenAuthProviderOptions) {
    const tokens = options?.tokens
    if (!Array.isArray(tokens)) {
      // A lone string would otherwise be iterated character by character, or matched as a substring.
      throw new TypeError('SecretTokenAuthProvider: `tokens` must be an array of strings, e.g. { tokens: [\'abc123\'] }')
    }
    if (tokens.length === 0) throw new TypeError('SecretTokenAuthProvider: `tokens` is empty')
    this.#digests = new Int32Array(tokens.length * WORDS)
    this.#users = tokens.map((entry, i) => {
      const { token, username = 'secret_token_user', scopes = [] } = typeof entry === 'string' ? { token: entry } : (entry ?? {}) as SecretTokenEntry
      if (typeof token !== 'string' || !TOKEN68.test(token)) {
        throw new TypeError(`SecretTokenAuthProvider: tokens[${i}] is not a valid bearer token (RFC 6750 b64token)`)
      }
      const digest = hash('sha256', token, 'buffer')
      for (let w = 0; w < WORDS; w++) this.#digests[i * WORDS + w] = digest.readInt32LE(w * 4)
      const user: DefaultTokenAuthUser = { id: username, username, scopes: Object.freeze([...scopes]) }
      return Object.freeze(user) as unknown as TokenAuthUser
    })
  }

  getUser (token: string): TokenAuthUser | null {
    const d = hash('sha256', token, 'buffer')
    const w0 = d.readInt32LE(0); const w1 = d.readInt32LE(4); const w2 = d.readInt32LE(8); const w3 = d.readInt32LE(12)
    const w4 = d.readInt32LE(16); const w5 = d.readInt32LE(20); const w6 = d.readInt32LE(24); const w7 = d.readInt32LE(28)
    const s = this.#digests
    let found = -1
    for (let o = 0, k = 0; o < s.length; o += WORDS, k++) {
      const diff = (s[o] ^ w0) | (s[o + 1] ^ w1) | (s[o + 2] ^ w2) | (s[o + 3] ^ w3) |
        (s[o + 4] ^ w4) | (s[o + 5] ^ w5) | (s[o + 6] ^ w6) | (s[o + 7] ^ w7)
      if (diff === 0) found = k
    }
    return found === -1 ? null : this.#users[found]
  }
}
