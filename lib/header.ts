// Authorization header parsing: RFC 6750 §2.1 (b64token) and RFC 9110 §11 (credentials).
// Pure functions, no Fastify import: this runs on every request, so it is a char-code loop that
// allocates nothing but the token substring.

/** No usable credentials: no header, an empty one, or another scheme (Basic, Token, ...). */
export const MISSING = 1
/** Bearer credentials that break the grammar, are too long, or come twice. */
export const MALFORMED = 2
export type ParseFailure = typeof MISSING | typeof MALFORMED

// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const TOKEN68 = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  if (/[A-Za-z0-9\-._~+/]/.test(ch)) TOKEN68[c] = 1
}
const EQ = 61
const SP = 32
const HTAB = 9

function isToken68Char (c: number): boolean {
  return c < 128 && TOKEN68[c] === 1
}

/** True when the whole string is a token68 (RFC 9110 §11.2), the grammar of a bearer token. */
export function isToken68 (s: string): boolean {
  let i = 0
  while (i < s.length && isToken68Char(s.charCodeAt(i))) i++
  if (i === 0) return false
  while (i < s.length && s.charCodeAt(i) === EQ) i++
  return i === s.length
}

function isOws (c: number): boolean {
  return c === SP || c === HTAB
}

/**
 * Parses one Authorization field value. Returns the bearer token, or why there is none.
 * Leading and trailing OWS is not part of a field value (RFC 9110 §5.5), so it is ignored; between the
 * scheme and the token only SP is allowed (RFC 6750: `"Bearer" 1*SP b64token`).
 */
export function parseBearer (value: string | undefined, maxTokenLength: number): string | ParseFailure {
  if (value === undefined) return MISSING
  let start = 0
  let end = value.length
  while (start < end && isOws(value.charCodeAt(start))) start++
  while (end > start && isOws(value.charCodeAt(end - 1))) end--
  if (start === end) return MISSING

  // The scheme is a token and case-insensitive: compare "bearer" without allocating a lowercase copy.
  if (end - start < 6 || !isBearerAt(value, start)) return MISSING
  let i = start + 6
  if (i === end) return MALFORMED // "Bearer" alone
  const sep = value.charCodeAt(i)
  if (sep !== SP) {
    // "Bearerx ..." is another scheme; "Bearer\t..." is Bearer with a separator the grammar forbids.
    return sep === HTAB ? MALFORMED : (isToken68Char(sep) || sep === EQ ? MISSING : MALFORMED)
  }
  while (i < end && value.charCodeAt(i) === SP) i++
  const tokenStart = i
  if (end - tokenStart > maxTokenLength) return MALFORMED
  while (i < end && isToken68Char(value.charCodeAt(i))) i++
  if (i === tokenStart) return MALFORMED // no token68 character at all
  while (i < end && value.charCodeAt(i) === EQ) i++
  if (i !== end) return MALFORMED // a space, a second token, a control or non-ASCII character
  return value.slice(tokenStart, end)
}

function isBearerAt (s: string, i: number): boolean {
  // ASCII letters only; `| 0x20` folds A-Z onto a-z.
  return (s.charCodeAt(i) | 0x20) === 98 && // b
    (s.charCodeAt(i + 1) | 0x20) === 101 && // e
    (s.charCodeAt(i + 2) | 0x20) === 97 && // a
    (s.charCodeAt(i + 3) | 0x20) === 114 && // r
    (s.charCodeAt(i + 4) | 0x20) === 101 && // e
    (s.charCodeAt(i + 5) | 0x20) === 114 // r
}

/**
 * Node keeps only the first of two Authorization headers in `headers`; the raw list has all of them.
 * Two credentials are ambiguous, so they are malformed.
 */
export function hasDuplicateAuthorization (rawHeaders: string[]): boolean {
  let seen = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (seen) return true
      seen = true
    }
  }
  return false
}
