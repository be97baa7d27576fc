/**
 * Token format: `<prefix>_<30 random base62 chars><6 base62 chars of CRC32(random part)>`.
 *
 * - 30 base62 characters carry 30 * log2(62) ≈ 178.6 bits of entropy (≥ 160), drawn from
 *   crypto.randomBytes with rejection sampling (no modulo bias).
 * - The checksum lets secret scanners recognise a token and lets the server reject a mistyped or
 *   forged token without touching the database (as GitHub's tokens do).
 * - Only the SHA-256 of the whole token string (`hashToken`) is ever stored.
 *
 * This module imports nothing of the project.
 */
import * as crypto from 'node:crypto'

export const BASE62_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** Number of random base62 characters. */
export const TOKEN_RANDOM_LENGTH = 30
/** Number of base62 checksum characters (62^6 > 2^32, so any CRC32 fits). */
export const TOKEN_CHECKSUM_LENGTH = 6
/** Random characters shown after `<prefix>_` by `tokenHint` (e.g. `tat_AbC1`): 4 of 30, ~24 bits. */
export const TOKEN_VISIBLE_RANDOM_CHARS = 4
export const DEFAULT_TOKEN_PREFIX = 'tat'

/** What a token prefix may be: a lowercase letter, then up to 15 lowercase letters or digits. */
export const PREFIX_RE = /^[a-z][a-z0-9]{0,15}$/
const BODY_LENGTH = TOKEN_RANDOM_LENGTH + TOKEN_CHECKSUM_LENGTH

/** The length of every token with this prefix. */
export const tokenLength = (prefix: string): number => prefix.length + 1 + BODY_LENGTH

/** Throws a clear error unless `prefix` matches /^[a-z][a-z0-9]{0,15}$/. Returns it. */
export function validateTokenPrefix (prefix: string): string {
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
    throw new TypeError(
      `fastify-token-auth: invalid token prefix ${JSON.stringify(prefix)}: ` +
      'it must be 1 to 16 characters, a lowercase letter followed by lowercase letters or digits (/^[a-z][a-z0-9]{0,15}$/)'
    )
  }
  return prefix
}

/** CRC32 (IEEE) table: the format check computes the checksum in its character loop, without a slice. */
const CRC_TABLE: Uint32Array = makeCrcTable()

function makeCrcTable (): Uint32Array {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
}

/** CRC32 of an ASCII string (the random part of a token is base62). */
function crc32 (data: string): number {
  let crc = 0xffffffff
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data.charCodeAt(i)) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

function encodeChecksum (crc: number): string {
  let out = ''
  let n = crc >>> 0
  for (let i = 0; i < TOKEN_CHECKSUM_LENGTH; i++) {
    out = BASE62_ALPHABET[n % 62] + out
    n = Math.floor(n / 62)
  }
  return out
}

/** Value of a base62 character code, or -1. */
function base62Value (c: number): number {
  if (c >= 48 && c <= 57) return c - 48 // 0-9
  if (c >= 65 && c <= 90) return c - 55 // A-Z → 10..35
  if (c >= 97 && c <= 122) return c - 61 // a-z → 36..61
  return -1
}

/**
 * A new token: `${prefix}_${30 random base62}${6 base62 CRC32 of the random part}`.
 * @throws TypeError when the prefix is invalid.
 */
export function generateToken (prefix: string = DEFAULT_TOKEN_PREFIX): string {
  validateTokenPrefix(prefix)
  let random = ''
  while (random.length < TOKEN_RANDOM_LENGTH) {
    // 248 = 4 * 62: bytes >= 248 are rejected so every character is equally likely.
    const bytes = crypto.randomBytes(TOKEN_RANDOM_LENGTH + 8)
    for (let i = 0; i < bytes.length && random.length < TOKEN_RANDOM_LENGTH; i++) {
      const b = bytes[i]
      if (b < 248) random += BASE62_ALPHABET[b % 62]
    }
  }
  return `${prefix}_${random}${encodeChecksum(crc32(random))}`
}

/**
 * True when `token` has the right prefix and `_`, the exact length, only base62 characters after the
 * `_`, and a matching checksum. Hot path: one char-code loop computing the CRC32, no regex, no throw.
 * `prefix` is not validated here (validate it once, at configuration time).
 */
export function checkTokenFormat (token: string, prefix: string): boolean {
  if (typeof token !== 'string') return false
  const p = prefix.length
  if (token.length !== tokenLength(prefix)) return false
  for (let i = 0; i < p; i++) {
    if (token.charCodeAt(i) !== prefix.charCodeAt(i)) return false
  }
  if (token.charCodeAt(p) !== 95 /* _ */) return false
  const start = p + 1
  const checksumStart = start + TOKEN_RANDOM_LENGTH
  // The CRC32 of the random part, in the same loop that checks its characters (no slice, no call).
  let crc = 0xffffffff
  for (let i = start; i < checksumStart; i++) {
    const c = token.charCodeAt(i)
    if (base62Value(c) < 0) return false
    crc = CRC_TABLE[(crc ^ c) & 0xff] ^ (crc >>> 8)
  }
  let expected = 0
  for (let i = checksumStart; i < token.length; i++) {
    const v = base62Value(token.charCodeAt(i))
    if (v < 0) return false
    expected = expected * 62 + v
  }
  return ((crc ^ 0xffffffff) >>> 0) === expected
}

const oneShotHash = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash

/**
 * Hex SHA-256 of the whole token string: what the database stores. The provider searches by the
 * same digest made in JavaScript (lib/sha256.ts), so a fault in either is a token never found.
 */
export const hashToken: (token: string) => string = typeof oneShotHash === 'function'
  ? (token) => oneShotHash('sha256', token, 'hex')
  : (token) => crypto.createHash('sha256').update(token).digest('hex')

/**
 * The token's hint, the short visible part stored and shown in listings: `<prefix>_` and the first 4
 * random characters (e.g. `tat_AbC1`), enough to tell tokens apart without revealing a useful part of
 * the secret.
 */
export function tokenHint (token: string): string {
  const sep = token.indexOf('_')
  return token.slice(0, (sep < 0 ? 4 : sep + 1) + TOKEN_VISIBLE_RANDOM_CHARS)
}
