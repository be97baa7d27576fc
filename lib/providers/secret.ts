import { hash } from 'node:crypto'
import { sha256Ascii } from '../sha256.js'
import { isScopeToken } from '../grammar.js'
import { isToken68 } from '../header.js'
import { arrayOf, object, satisfies, string, type Check } from '../validate.js'
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

const entryShape = object({
  token: satisfies<string>((v) => typeof v === 'string' && isToken68(v), 'a valid bearer token (RFC 6750 b64token)'),
  username: string({ pattern: /^.+$/s, expected: 'a non-empty string', default: 'secret_token_user' }),
  scopes: arrayOf(satisfies<string>(isScopeToken, 'an RFC 6749 scope token'), { max: 64, expected: 'an array of RFC 6749 scope tokens', default: [] })
}, { expected: 'a token (a string) or { token, username?, scopes? }' })
// A string, or anything that is not an object, is the token itself (and checked as one).
const entry: Check<ReturnType<typeof entryShape>> = (value, path) => entryShape(typeof value === 'object' && value !== null ? value : { token: value }, path)
const secretOptions = object({
  // A lone string would otherwise be iterated character by character, or matched as a substring.
  tokens: arrayOf(entry, { min: 1, max: 100_000, expected: 'a non-empty array of tokens, e.g. { tokens: [\'abc123\'] }' })
})

const WORDS = 8 // a SHA-256 digest is 8 32-bit words
// Tokens up to two SHA-256 blocks are hashed in JavaScript (the cheaper in a loaded server), longer
// ones by node:crypto (the cheaper past a few blocks). Chosen by the presented token's length only.
const JS_HASH_MAX = 119
/**
 * A fixed list of secrets, for internal services and for guarding /login from native apps.
 * Every configured secret is compared, in constant time, on every request: the presented token is
 * hashed (so its length does not matter), then XORed word by word against every stored digest with
 * no early exit. The secrets' digests are node:crypto's; the presented token's is sha256.ts's (a
 * fraction of the cost in a loaded server), so the two must agree for anything to match.
 */
export class SecretTokenAuthProvider implements TokenAuthProvider {
  readonly #digests: Int32Array
  readonly #users: TokenAuthUser[]
  /** The presented token's digest, reused (getUser is synchronous). */
  readonly #d = new Int32Array(WORDS)

  constructor (options: SecretTokenAuthProviderOptions) {
    const { tokens } = secretOptions(options, 'SecretTokenAuthProvider')
    this.#digests = new Int32Array(tokens.length * WORDS)
    this.#users = tokens.map(({ token, username, scopes }, i) => {
      nodeDigest(token, this.#digests, i * WORDS)
      const user: DefaultTokenAuthUser = { id: username, username, scopes: Object.freeze([...scopes]) }
      return Object.freeze(user) as unknown as TokenAuthUser
    })
  }

  getUser (token: string): TokenAuthUser | null {
    if (typeof token !== 'string') return null
    const d = this.#d
    if (token.length <= JS_HASH_MAX) {
      // Not ASCII: no secret (each is an RFC 6750 b64token) can be it.
      if (!sha256Ascii(token, d)) return null
    } else {
      nodeDigest(token, d, 0)
    }
    const w0 = d[0]; const w1 = d[1]; const w2 = d[2]; const w3 = d[3]
    const w4 = d[4]; const w5 = d[5]; const w6 = d[6]; const w7 = d[7]
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

/** node:crypto's SHA-256 of `token` into `out` from `at`, as 8 big-endian words (sha256Ascii's order). */
function nodeDigest (token: string, out: Int32Array, at: number): void {
  const digest = hash('sha256', token, 'buffer')
  for (let w = 0; w < WORDS; w++) out[at + w] = digest.readInt32BE(w * 4)
}
