import t from 'tap'
import * as crypto from 'node:crypto'
import * as zlib from 'node:zlib'
import fc from 'fast-check'
import {
  BASE62_ALPHABET, checkTokenFormat, generateToken, hashToken, tokenHint, validateTokenPrefix
} from '../../lib/store/token-format.js'

const BASE62 = /^[0-9A-Za-z]+$/

t.test('generateToken: shape, entropy and checksum', async (t) => {
  const token = generateToken()
  t.match(token, /^tat_[0-9A-Za-z]{36}$/)
  const random = token.slice(4, 34)
  const checksum = token.slice(34)
  let n = 0
  for (const c of checksum) n = n * 62 + BASE62_ALPHABET.indexOf(c)
  t.equal(n, zlib.crc32(random), 'the last 6 characters are the base62 CRC32 of the random part')
  t.ok(30 * Math.log2(62) >= 160, '30 base62 characters carry at least 160 bits')
  t.ok(checkTokenFormat(token, 'tat'))
  t.match(generateToken('myapp2'), /^myapp2_[0-9A-Za-z]{36}$/, 'custom prefix')
  const many = new Set(Array.from({ length: 2000 }, () => generateToken()))
  t.equal(many.size, 2000, 'no duplicates')
})

t.test('generateToken: characters are uniformly distributed (no modulo bias)', async (t) => {
  const counts = new Array<number>(62).fill(0)
  const N = 6000
  for (let i = 0; i < N; i++) {
    const random = generateToken().slice(4, 34)
    for (const c of random) counts[BASE62_ALPHABET.indexOf(c)]++
  }
  const expected = (N * 30) / 62
  // chi-square with 61 degrees of freedom: p = 0.0001 at about 109
  const chi = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0)
  t.ok(chi < 109, `chi-square ${chi.toFixed(1)} < 109`)
})

t.test('prefix validation', async (t) => {
  for (const bad of ['', 'Tat', '1ab', 'ta_t', 'a'.repeat(17), 'tät', 'ta-t', ' tat']) {
    t.throws(() => generateToken(bad), { name: 'TypeError', message: /invalid token prefix/ }, JSON.stringify(bad))
    t.throws(() => validateTokenPrefix(bad), /\^\[a-z\]\[a-z0-9\]\{0,15\}\$/)
  }
  for (const good of ['a', 'tat', 'a'.repeat(16), 'x9']) t.equal(validateTokenPrefix(good), good)
})

t.test('checkTokenFormat rejects near misses', async (t) => {
  const token = generateToken()
  t.ok(checkTokenFormat(token, 'tat'))
  t.notOk(checkTokenFormat(token, 'tab'), 'other prefix')
  t.notOk(checkTokenFormat(token, 'ta'), 'shorter prefix')
  t.notOk(checkTokenFormat(token.replace('_', '-'), 'tat'), 'separator')
  t.notOk(checkTokenFormat(token.slice(0, -1), 'tat'), 'truncated')
  t.notOk(checkTokenFormat(token + 'a', 'tat'), 'extended')
  t.notOk(checkTokenFormat('', 'tat'), 'empty')
  t.notOk(checkTokenFormat(token.toUpperCase(), 'tat'))
  t.notOk(checkTokenFormat(undefined as unknown as string, 'tat'), 'not a string')
  for (let i = 4; i < token.length; i++) {
    for (const c of ['0', 'z', 'Z', '!', 'é', '\0']) {
      if (token[i] === c) continue
      const changed = token.slice(0, i) + c + token.slice(i + 1)
      if (checkTokenFormat(changed, 'tat')) t.fail(`one character changed at ${i} to ${c} was accepted`)
    }
    const ch = token[i]
    const flipped = ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase()
    if (flipped !== ch && checkTokenFormat(token.slice(0, i) + flipped + token.slice(i + 1), 'tat')) {
      t.fail(`case flip at ${i} accepted`)
    }
  }
  // swapping two adjacent different characters of the random part
  const swapped = token.slice(0, 4) + token[5] + token[4] + token.slice(6)
  if (token[4] !== token[5]) t.notOk(checkTokenFormat(swapped, 'tat'), 'transposition')
  t.pass('near misses checked')
})

t.test('checkTokenFormat: property tests', async (t) => {
  // Random strings over the token alphabet with the right shape almost never pass the checksum;
  // any that does must be exactly a valid token (checksum recomputed independently).
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...BASE62_ALPHABET), minLength: 36, maxLength: 36 }), (body) => {
    const token = `tat_${body}`
    const ok = checkTokenFormat(token, 'tat')
    let n = 0
    for (const c of body.slice(30)) n = n * 62 + BASE62_ALPHABET.indexOf(c)
    return ok === (n === zlib.crc32(body.slice(0, 30)))
  }), { numRuns: 10000 })
  fc.assert(fc.property(fc.string({ maxLength: 60 }), (s) => {
    const ok = checkTokenFormat(s, 'tat')
    return !ok || (s.startsWith('tat_') && s.length === 40 && BASE62.test(s.slice(4)))
  }), { numRuns: 10000 })
  t.pass()
})

t.test('hashToken is the hex SHA-256 of the whole token; tokenHint is short', async (t) => {
  const token = generateToken()
  t.equal(hashToken(token), crypto.createHash('sha256').update(token).digest('hex'))
  t.match(hashToken(token), /^[0-9a-f]{64}$/)
  t.equal(tokenHint(token), token.slice(0, 8))
  t.match(tokenHint(token), /^tat_[0-9A-Za-z]{4}$/)
  t.match(tokenHint(generateToken('myapp')), /^myapp_[0-9A-Za-z]{4}$/, 'custom prefix: prefix_ + 4 characters')
  t.equal(tokenHint('abcdefghijkl'), 'abcdefgh', 'no separator: the first 8 characters')
})

t.test('hashToken falls back to createHash without crypto.hash', async (t) => {
  const original = (crypto as unknown as { hash?: unknown }).hash
  const { hashToken: fallback } = await t.mockImport<typeof import('../../lib/store/token-format.js')>(
    '../../lib/store/token-format.js',
  { 'node:crypto': { ...crypto, hash: undefined } }
  )
  t.equal(fallback('abc'), crypto.createHash('sha256').update('abc').digest('hex'))
  t.equal((crypto as unknown as { hash?: unknown }).hash, original)
})
