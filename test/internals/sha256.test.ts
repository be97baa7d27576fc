// lib/sha256.ts: the warm path's SHA-256 in JavaScript must be node:crypto's, byte for byte.
import { hash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import { digestKey, hexToKey, keyToHex, sha256Ascii } from '../../lib/sha256.js'

const out = new Int32Array(8)
// The digest in hex by way of its key: both directions checked at once.
const mine = (s: string): string | false => sha256Ascii(s, out) && keyToHex(digestKey(out))

t.test('the digest of every ASCII string is node:crypto\'s', async (t) => {
  // Every length across the padding's edges (55/56 bytes: one block or two) and a few blocks on.
  const wrong: number[] = []
  for (let n = 0; n <= 200; n++) {
    const s = Array.from({ length: n }, (_, i) => String.fromCharCode((i * 37 + n) % 128)).join('')
    if (mine(s) !== hash('sha256', s, 'hex')) wrong.push(n)
  }
  t.same(wrong, [], 'lengths 0 to 200')
  fc.assert(fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 300 }),
    (s) => mine(s) === hash('sha256', s, 'hex')), { numRuns: 3000 })
  t.equal(mine(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'the empty string (FIPS 180-4 test vector)')
  t.equal(mine('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', '"abc" (FIPS 180-4 test vector)')
  t.equal(mine('a'.repeat(100_000)), hash('sha256', 'a'.repeat(100_000), 'hex'), 'a long string')
})

t.test('a character above 0x7f is refused, whatever its place', async (t) => {
  for (const s of ['é', 'tat_é', 'x'.repeat(63) + '\u0080', '\u{1F600}', 'a\u00ffb', 'x'.repeat(100) + 'ß']) {
    t.equal(sha256Ascii(s, out), false, JSON.stringify(s))
  }
})

t.test('keys: one per digest, and the key of a hex digest is the key of the digest', async (t) => {
  const keys = new Set<string>()
  const wrong: string[] = []
  for (let i = 0; i < 2000; i++) {
    const token = randomBytes(24).toString('base64url')
    sha256Ascii(token, out)
    const key = digestKey(out)
    const hex = hash('sha256', token, 'hex')
    if (key.length !== 16 || hexToKey(hex) !== key || keyToHex(key) !== hex) wrong.push(token)
    keys.add(key)
  }
  t.same(wrong, [], 'every key is 16 characters, the same from the hex digest, and back to it')
  t.equal(keys.size, 2000, 'no two digests share a key')
  for (const notHex of ['', 'abc', 'G'.repeat(64), 'A'.repeat(64), '0'.repeat(63), '0'.repeat(65)]) {
    t.equal(hexToKey(notHex), '', `${JSON.stringify(notHex)} is no digest`)
  }
})
