// Property tests (fast-check, 10,000 runs each): the header parser never throws and never yields a
// token outside the grammar; SecretTokenAuthProvider accepts exact tokens only.
import t from 'tap'
import fc from 'fast-check'
import Fastify from 'fastify'
import tokenAuth, { Reason, SecretTokenAuthProvider, parseBearer } from '../lib/index.js'

const RUNS = { numRuns: 10_000 }
const GRAMMAR = /^[A-Za-z0-9\-._~+/]+=*$/
// The reference: RFC 9110 credentials with OWS trimmed, RFC 6750 `Bearer 1*SP b64token`.
const MODEL = /^[ \t]*bearer +([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i

const TOKEN68_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/'
const token68Char = fc.constantFrom(...TOKEN68_CHARS)
const utf16Unit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) // lone surrogates too
const noise = fc.constantFrom(' ', '  ', '\t', '=', '==', ',', '"', '\\', '\0', '\r', '\n', '\u007f', 'é', '\u00a0', '\u{1F600}', '\ud800', 'Bearer', 'bearer ')

// "Bearer"-like prefixes, separators and bodies mixing grammar characters with everything else.
const headerLike = fc.tuple(
  fc.constantFrom('', ' ', '\t', ' \t '),
  fc.constantFrom('Bearer', 'bearer', 'BEARER', 'BeArEr', 'Bearer', 'Bearerx', 'Bear', 'Token Bearer', 'Basic', 'Basic xBearer', 'ﬀBearer', 'B\u0065arer', ''),
  fc.constantFrom('', ' ', '  ', '\t', ' \t', '   '),
  fc.array(fc.oneof({ weight: 6, arbitrary: token68Char }, { weight: 1, arbitrary: noise }, { weight: 1, arbitrary: utf16Unit }), { maxLength: 60 }).map((a) => a.join('')),
  fc.constantFrom('', '=', '==', ' ', '\t', ' x')
).map((parts) => parts.join(''))

const anyInput = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }), // any code point
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: utf16Unit }),
  headerLike,
  headerLike,
  headerLike
)

t.test('parseBearer never throws, and any token it yields is in the grammar and in the input', async (t) => {
  fc.assert(fc.property(anyInput, fc.integer({ min: 1, max: 100 }), (input, max) => {
    const result = parseBearer(input, max)
    if (typeof result === 'string') {
      return GRAMMAR.test(result) && input.includes(result) && result.length <= max
    }
    return result === Reason.MISSING || result === Reason.MALFORMED
  }), RUNS)
  t.pass('10,000 runs')
})

t.test('parseBearer agrees with the grammar written as a regular expression', async (t) => {
  fc.assert(fc.property(anyInput, (input) => {
    const result = parseBearer(input, 1024)
    const m = MODEL.exec(input)
    if (m !== null && m[1].length <= 1024) return result === m[1]
    return typeof result !== 'string'
  }), RUNS)
  t.pass('10,000 runs')
})

t.test('well-formed bearer credentials always parse back to their token', async (t) => {
  const token = fc.tuple(fc.array(token68Char, { minLength: 1, maxLength: 80 }), fc.nat({ max: 3 }))
    .map(([chars, pad]) => chars.join('') + '='.repeat(pad))
  const scheme = fc.array(fc.boolean(), { minLength: 6, maxLength: 6 })
    .map((upper) => [...'bearer'].map((c, i) => upper[i] ? c.toUpperCase() : c).join(''))
  fc.assert(fc.property(scheme, fc.integer({ min: 1, max: 5 }), token, fc.constantFrom('', ' ', '\t', ' \t'), (s, spaces, tok, trail) => {
    return parseBearer(`${s}${' '.repeat(spaces)}${tok}${trail}`, 1024) === tok
  }), RUNS)
  t.pass('10,000 runs')
})

const SECRET = 'Sv3c-Token_Value.with~chars+/AbCdEf=='
const provider = new SecretTokenAuthProvider({ tokens: ['other-service-token', SECRET, 'x'] })
const isSecret = (s: string) => s === SECRET || s === 'other-service-token' || s === 'x'

t.test('SecretTokenAuthProvider never accepts a random string', async (t) => {
  const randomToken68 = fc.array(token68Char, { minLength: 1, maxLength: 64 }).map((a) => a.join(''))
  fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), randomToken68), (s) => {
    return isSecret(s) || provider.getUser(s) === null
  }), RUNS)
  t.pass('10,000 runs')
})

t.test('SecretTokenAuthProvider never accepts a near-miss of a real token', async (t) => {
  const n = SECRET.length
  const changed = fc.tuple(fc.nat({ max: n - 1 }), fc.oneof(token68Char, utf16Unit))
    .filter(([i, c]) => SECRET[i] !== c)
    .map(([i, c]) => SECRET.slice(0, i) + c + SECRET.slice(i + 1))
  // prefixes, suffixes and inner substrings
  const truncated = fc.tuple(fc.nat({ max: n }), fc.nat({ max: n }))
    .map(([a, b]) => SECRET.slice(Math.min(a, b), Math.max(a, b)))
    .filter((s) => s !== SECRET)
  const extended = fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }))
    .map(([after, before]) => before + SECRET + after)
  const letters = [...SECRET].flatMap((c, i) => /[A-Za-z]/.test(c) ? [i] : [])
  const caseFlipped = fc.subarray(letters, { minLength: 1 }).map((idx) => {
    const chars = [...SECRET]
    for (const i of idx) chars[i] = chars[i] === chars[i].toUpperCase() ? chars[i].toLowerCase() : chars[i].toUpperCase()
    return chars.join('')
  })
  const kinds: Array<[string, fc.Arbitrary<string>]> = [
    ['one character changed', changed],
    ['truncated', truncated],
    ['extended', extended],
    ['case-flipped', caseFlipped]
  ]
  for (const [name, arb] of kinds) {
    fc.assert(fc.property(arb, (s) => s !== SECRET && provider.getUser(s) === null), RUNS)
    t.pass(`${name}: 10,000 runs`)
  }
  t.ok(provider.getUser(SECRET), 'and the token itself is accepted')
})

t.test('end to end: a request is let in only with the exact token', async (t) => {
  const app = Fastify()
  // 10,000 made-up tokens from one address: the per-address limit (test/invalid-tokens.test.ts) is off.
  await app.register(tokenAuth, { provider, invalidTokens: false })
  app.get('/p', { preHandler: app.auth }, async () => 'in')
  t.teardown(() => app.close())
  // Header values Node would accept on the wire (no CR, LF or NUL), bearer-shaped or not.
  const value = fc.oneof(headerLike, fc.string(), fc.constant(`Bearer ${SECRET}`).map((v) => v.slice(0, -1)))
    .filter((v) => !/[\r\n\0]/.test(v))
  await fc.assert(fc.asyncProperty(value, async (v) => {
    const res = await app.inject({ url: '/p', headers: { authorization: v } })
    const token = MODEL.exec(v)?.[1]
    if (token !== undefined && isSecret(token)) return res.statusCode === 200
    return [400, 401].includes(res.statusCode) && res.body !== 'in' && !res.body.includes(SECRET)
  }), RUNS)
  t.pass('10,000 runs')
})
