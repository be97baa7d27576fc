import t from 'tap'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { InvalidPasswordError } from '../../lib/store/errors.js'
import {
  DEFAULT_PASSWORD_PARAMS, dummyVerify, hashPassword, needsRehash, normalizePassword, resolvePasswordParams, verifyPassword
} from '../../lib/store/passwords.js'

const FAST = { ln: 10 }

t.test('default parameters: OWASP scrypt, self-describing string, verify, off the event loop', async (t) => {
  t.same(DEFAULT_PASSWORD_PARAMS, { ln: 17, r: 8, p: 1 })
  const h = monitorEventLoopDelay({ resolution: 10 })
  h.enable()
  let ticks = 0
  const timer = setInterval(() => { ticks++ }, 5)
  const started = performance.now()
  const stored = await hashPassword('correct horse battery staple')
  const elapsed = performance.now() - started
  clearInterval(timer)
  h.disable()
  t.match(stored, /^scrypt\$ln=17,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  t.comment(`hashPassword with N=2^17: ${elapsed.toFixed(0)} ms, event loop max delay ${(h.max / 1e6).toFixed(1)} ms`)
  // A derivation on the event loop would block it for the whole `elapsed` and no 5 ms timer would fire.
  t.ok(h.max / 1e6 < elapsed * 0.6, 'the event loop was never blocked for most of the derivation')
  t.ok(ticks >= Math.min(5, Math.floor(elapsed / 50)), `timers fired during the derivation (${ticks})`)
  t.equal(await verifyPassword('correct horse battery staple', stored), true)
  t.equal(await verifyPassword('correct horse battery stapl', stored), false)
  t.equal(needsRehash(stored), false)
  t.equal(needsRehash(stored, { ln: 18 }), true)
})

t.test('salted: the same password hashes differently', async (t) => {
  const a = await hashPassword('pw', FAST)
  const b = await hashPassword('pw', FAST)
  t.not(a, b)
  t.ok(await verifyPassword('pw', a))
  t.ok(await verifyPassword('pw', b))
})

t.test('parameters are read back from the stored string', async (t) => {
  const stored = await hashPassword('s3cret', { ln: 11, r: 4, p: 2 })
  t.match(stored, /^scrypt\$ln=11,r=4,p=2\$/)
  t.ok(await verifyPassword('s3cret', stored), 'verifies without being told the parameters')
  t.equal(needsRehash(stored, { ln: 11, r: 4, p: 2 }), false)
  t.equal(needsRehash(stored, FAST), true)
  t.equal(needsRehash(stored), true)
})

t.test('password rules', async (t) => {
  await t.rejects(hashPassword('', FAST), InvalidPasswordError)
  await t.rejects(hashPassword('a\0b', FAST), { name: 'InvalidPasswordError', message: /NUL/ })
  await t.rejects(hashPassword('x'.repeat(1025), FAST), { message: /1 to 1024 characters/ })
  await t.rejects(hashPassword(42 as unknown as string, FAST), { message: /must be a string/ })
  t.ok(await hashPassword('x'.repeat(1024), FAST), '1024 characters are fine')
  t.equal(normalizePassword('ｐａｓｓ'), 'pass', 'NFKC')
  const stored = await hashPassword('Ａｂｃ', FAST)
  t.ok(await verifyPassword('Abc', stored), 'fullwidth and ASCII forms verify alike')
  t.ok(await verifyPassword('e\u0301', await hashPassword('\u00e9', FAST)), 'decomposed and composed forms verify alike')
  t.equal(await verifyPassword('a\0', stored), false, 'a rule-breaking password is simply wrong')
  t.equal(await verifyPassword('x'.repeat(5000), stored), false)
})

t.test('parameter validation', async (t) => {
  t.throws(() => resolvePasswordParams({ ln: 30 }), RangeError)
  t.throws(() => resolvePasswordParams({ r: 0 }), /r must be an integer from 1 to 32/)
  t.throws(() => resolvePasswordParams({ p: 1.5 }), RangeError)
  t.same(resolvePasswordParams({ ln: 12 }), { ln: 12, r: 8, p: 1 })
  await t.rejects(hashPassword('x', { ln: 40 }), RangeError)
})

t.test('malformed or tampered stored strings never verify', async (t) => {
  const good = await hashPassword('pw', FAST)
  const bad = [
    '', 'pw', 'scrypt$', good.replace('scrypt', 'bcrypt'), good.replace('ln=10', 'ln=30'),
    good.replace('ln=10', 'ln=abc'), good.slice(0, -10), good + '$x', good.replace('$', () => '$$')
  ]
  for (const s of bad) {
    t.equal(await verifyPassword('pw', s), false, JSON.stringify(s))
    t.equal(needsRehash(s, FAST), true, 'unparseable: needs a rehash')
  }
  const otherKey = good.replace(/\$[^$]+$/, '$' + 'A'.repeat(43))
  t.equal(await verifyPassword('pw', otherKey), false, 'another key of the right length')
})

t.test('dummyVerify does the same work as a real verification', async (t) => {
  t.equal(await dummyVerify('anything', FAST), false)
  t.equal(await dummyVerify('a\0', FAST), false)
  // The same derivation (N, r, p, key length, salt length) as verifying a hash made with the same
  // parameters: recorded through a wrapped crypto.scrypt (timing alone is too noisy on a busy machine).
  const calls: unknown[] = []
  const crypto = await import('node:crypto')
  const mod = await t.mockImport<typeof import('../../lib/store/passwords.js')>('../../lib/store/passwords.js', {
    'node:crypto': {
      ...crypto,
      scrypt: (pw: string, salt: Buffer, keylen: number, opts: object, cb: (err: Error | null, key: Buffer) => void) => {
        if (pw === 'fail') return cb(new Error('scrypt failed'), Buffer.alloc(0))
        calls.push({ pwLength: pw.length, saltLength: salt.length, keylen, opts })
        crypto.scrypt(pw, salt, keylen, opts, cb)
      }
    }
  })
  const stored = await mod.hashPassword('pw', { ln: 12 })
  calls.length = 0
  t.equal(await mod.verifyPassword('wrong', stored), false)
  t.equal(await mod.dummyVerify('wrong', { ln: 12 }), false)
  t.equal(calls.length, 2)
  t.same(calls[0], calls[1], 'identical scrypt calls')
  t.match(calls[0], { saltLength: 16, keylen: 32, opts: { N: 4096, r: 8, p: 1 } })
  calls.length = 0
  t.equal(await mod.verifyPassword('pw', 'not a hash'), false)
  t.equal(calls.length, 1, 'a malformed stored hash still costs one derivation')
  t.equal(await mod.verifyPassword('pw', 42 as unknown as string), false, 'a stored value that is not a string')
  await t.rejects(mod.hashPassword('fail', FAST), /scrypt failed/, 'a failing derivation rejects')

  const time = async (fn: () => Promise<unknown>): Promise<number> => {
    const s = performance.now()
    await fn()
    return performance.now() - s
  }
  const real: number[] = []
  const dummy: number[] = []
  for (let i = 0; i < 5; i++) {
    real.push(await time(() => verifyPassword('wrong', stored)))
    dummy.push(await time(() => dummyVerify('wrong', { ln: 12 })))
  }
  const median = (a: number[]): number => a.sort((x, y) => x - y)[2]
  t.comment(`median verify ${median(real).toFixed(1)} ms, dummy ${median(dummy).toFixed(1)} ms (N=2^12, for information)`)
})
