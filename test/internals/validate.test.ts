// The one option validator: what each check accepts, what it refuses and how the refusal reads.
import t from 'tap'
import {
  arrayOf, bool, integer, MAX_TIMER_MS, ms, nullable, object, oneOf, optional, optionPaths, orFalse, satisfies, string
} from '../../lib/validate.js'

const CODE = 'FST_TOKEN_AUTH_INVALID_OPTION'

t.test('integer: bounds, defaults, and nothing a timer cannot hold', async (t) => {
  const check = integer({ min: 1, max: 10, default: 5 })
  t.equal(check(undefined, 'x'), 5)
  t.equal(check(10, 'x'), 10)
  for (const bad of [0, 11, 1.5, NaN, Infinity, -Infinity, '3', null, true, 2 ** 53]) {
    t.throws(() => check(bad, 'a.b'), { code: CODE, option: 'a.b', message: /^fastify-token-auth: option a\.b must be an integer from 1 to 10, got / }, String(bad))
  }
  t.throws(() => integer({ min: 1, max: 2 })(undefined, 'req'), { option: 'req', message: /got undefined/ }, 'no default: required')
  t.throws(() => ms(1000)(3e9, 'timeout'), { message: 'fastify-token-auth: option timeout must be an integer from 1 to 2147483647 (milliseconds), got 3000000000' })
  t.equal(ms(1000)(MAX_TIMER_MS, 'timeout'), MAX_TIMER_MS)
  t.throws(() => ms(1000)(0, 't'), { code: CODE, option: 't' }, 'at least 1 ms unless said otherwise')
  t.equal(ms(1000, 0)(0, 't'), 0)
})

t.test('booleans, enums, strings, providers', async (t) => {
  t.equal(bool(true)(undefined, 'b'), true)
  t.equal(bool(true)(false, 'b'), false)
  t.throws(() => bool(true)('false', 'b'), { message: /option b must be true or false, got "false"/ })
  t.equal(oneOf(['refuse', 'revokeOldest'] as const, 'refuse')(undefined, 'e'), 'refuse')
  t.throws(() => oneOf(['refuse', 'revokeOldest'] as const, 'refuse')('revoke', 'e'), { message: /option e must be one of 'refuse', 'revokeOldest', got "revoke"/ })
  const s = string({ pattern: /^[a-z]+$/, expected: 'lowercase letters', default: 'abc' })
  t.equal(s(undefined, 's'), 'abc')
  t.throws(() => s('ABC', 's'), { message: /option s must be lowercase letters, got "ABC"/ })
  t.throws(() => s(5, 's'), { message: /got 5/ })
  const p = satisfies((v) => typeof v === 'function', 'a function')
  t.throws(() => p({}, 'f'), { message: /option f must be a function, got an object/ })
})

t.test('what a message shows of a bad value: never a whole object, a long string cut', async (t) => {
  const check = integer({ min: 1, max: 2 })
  t.throws(() => check({ password: 'hunter2' }, 'x'), { message: /got an object$/ })
  t.throws(() => check(['secret'], 'x'), { message: /got an array$/ })
  t.throws(() => check(() => 'secret', 'x'), { message: /got a function$/ })
  const long = 'k'.repeat(500)
  t.throws(() => check(long, 'x'), { message: new RegExp(`got "${'k'.repeat(60)}"…$`) })
})

t.test('orFalse, optional, nullable', async (t) => {
  const n = integer({ min: 1, max: 9, default: 3 })
  t.equal(orFalse(n)(false, 'x'), false)
  t.equal(orFalse(n)(undefined, 'x'), 3)
  t.throws(() => orFalse(n)(true, 'x'), { code: CODE, option: 'x' })
  t.equal(optional(n)(undefined, 'x'), undefined)
  t.equal(nullable(n)(null, 'x'), null)
  t.equal(nullable(n)(undefined, 'x'), null)
  t.equal(nullable(n)(4, 'x'), 4)
})

t.test('arrayOf: each item checked at its index, duplicates removed, frozen', async (t) => {
  const scopes = arrayOf(string({ pattern: /^\w+$/, expected: 'a word' }), { min: 1, max: 3, expected: '1 to 3 words', default: ['read'] })
  t.same(scopes(undefined, 'scopes'), ['read'])
  const got = scopes(['a', 'b', 'a'], 'scopes')
  t.same(got, ['a', 'b'])
  t.ok(Object.isFrozen(got))
  t.throws(() => scopes(['a', 'b c'], 'r.scopes'), { option: 'r.scopes[1]', message: /option r\.scopes\[1\] must be a word, got "b c"/ })
  t.throws(() => scopes([], 'scopes'), { message: /must be 1 to 3 words, got an array/ })
  t.throws(() => scopes(['a', 'b', 'c', 'd'], 'scopes'), { code: CODE, option: 'scopes' })
  t.throws(() => scopes('read', 'scopes'), { message: /got "read"/ })
})

t.test('object: unknown keys refused, defaults filled, a frozen copy, the input untouched', async (t) => {
  const check = object({
    cache: orFalse(object({ ttl: ms(60_000, 0), max: integer({ min: 0, max: 100, default: 10 }) })),
    name: string({ expected: 'a name', default: 'n' })
  }, { allow: ['prefix'] })
  t.same(check(undefined, ''), { cache: { ttl: 60_000, max: 10 }, name: 'n' }, 'nothing given: every default')
  const given = { cache: { ttl: 5 }, prefix: '/api' }
  const out = check(given, '')
  t.same(out, { cache: { ttl: 5, max: 10 }, name: 'n' }, 'allowed keys are left out')
  t.same(given, { cache: { ttl: 5 }, prefix: '/api' }, 'the caller\'s object is not changed')
  t.ok(Object.isFrozen(out) && Object.isFrozen(out.cache))
  t.equal(check({ cache: false }, '').cache, false)
  t.throws(() => check({ cahce: false }, ''), { code: CODE, option: 'cahce', message: 'fastify-token-auth: unknown option cahce (known: cache, name)' })
  t.throws(() => check({ cache: { tll: 1 } }, 'drizzle'), { option: 'drizzle.cache.tll', message: /unknown option drizzle\.cache\.tll \(known: drizzle\.cache\.ttl, drizzle\.cache\.max\)/ })
  t.throws(() => check({ cache: { ttl: Infinity } }, 'drizzle'), { code: CODE, option: 'drizzle.cache.ttl' })
  for (const bad of [null, [], 'x', 5, new Map(), new (class Opts {})()]) {
    t.throws(() => check(bad, 'opts'), { option: 'opts', message: /option opts must be an object with the keys cache, name/ }, String(bad))
  }
  t.same(check(Object.assign(Object.create(null), { name: 'x' }), ''), { cache: { ttl: 60_000, max: 10 }, name: 'x' }, 'a null-prototype object is fine')
  t.same(optionPaths(check), ['cache', 'cache.ttl', 'cache.max', 'name'], 'its option paths')
})
