// SecretTokenAuthProvider: construction rules and exact matching.
import t from 'tap'
import { SecretTokenAuthProvider } from '../lib/index.js'

const TOKEN = 'abc123-Secret_token.value~XYZ'

t.test('tokens must be a list', async (t) => {
  const notAList = (got: string) => ({
    code: 'FST_TOKEN_AUTH_INVALID_OPTION',
    option: 'SecretTokenAuthProvider.tokens',
    message: `fastify-token-auth: option SecretTokenAuthProvider.tokens must be a non-empty array of tokens, e.g. { tokens: ['abc123'] }, got ${got}`
  })
  t.throws(() => new SecretTokenAuthProvider({ tokens: 'abc123' as never }), { name: 'FastifyError', ...notAList('"abc123"') }, 'a lone string is refused')
  try {
    t.fail(String(new SecretTokenAuthProvider({ tokens: 'x' as never })))
  } catch (err) {
    t.ok(err instanceof TypeError, 'a TypeError')
  }
  t.throws(() => new SecretTokenAuthProvider({} as never), notAList('undefined'))
  t.throws(() => new SecretTokenAuthProvider(undefined as never), notAList('undefined'))
  t.throws(() => new SecretTokenAuthProvider({ tokens: new Set(['abc']) as never }), notAList('an object'))
  t.throws(() => new SecretTokenAuthProvider({ tokens: [] }), notAList('an array'), 'an empty list is refused')
})

t.test('every token must be a valid b64token', async (t) => {
  for (const bad of ['', 'has space', 'tab\there', 'quote"', 'ünï', '==', 'a=b', 'a,b', 'Bearer x', 42, null, undefined]) {
    t.throws(() => new SecretTokenAuthProvider({ tokens: ['fine', bad as string] }),
      { option: 'SecretTokenAuthProvider.tokens[1].token', message: /option SecretTokenAuthProvider\.tokens\[1\]\.token must be a valid bearer token \(RFC 6750 b64token\)/ }, JSON.stringify(bad))
  }
  t.throws(() => new SecretTokenAuthProvider({ tokens: [{ token: 'a b' }] }), { message: /tokens\[0\]\.token must be/ })
  t.throws(() => new SecretTokenAuthProvider({ tokens: [{} as never] }), { message: /tokens\[0\]\.token must be/ })
  t.doesNotThrow(() => new SecretTokenAuthProvider({ tokens: ['AZaz09-._~+/=='] }))
})

t.test('users: secret_token_user by default, per-token names and scopes', async (t) => {
  const p = new SecretTokenAuthProvider({
    tokens: [TOKEN, { token: 'svc-a' }, { token: 'svc-b', username: 'billing', scopes: ['invoices:read', 'invoices:write'] }]
  })
  t.same(p.getUser(TOKEN), { id: 'secret_token_user', username: 'secret_token_user', scopes: [] })
  t.same(p.getUser('svc-a'), { id: 'secret_token_user', username: 'secret_token_user', scopes: [] })
  t.same(p.getUser('svc-b'), { id: 'billing', username: 'billing', scopes: ['invoices:read', 'invoices:write'] })
  const user = p.getUser('svc-b')
  t.ok(Object.isFrozen(user), 'users are frozen: a handler cannot change them for the next request')
  t.ok(Object.isFrozen(user?.scopes))
  t.equal(p.getUser('svc-b'), user, 'the same object every time (no allocation per request)')
})

t.test('the configuration is copied, not kept', async (t) => {
  const scopes = ['read']
  const tokens = [{ token: 'x1', scopes }]
  const p = new SecretTokenAuthProvider({ tokens })
  scopes.push('admin')
  tokens[0].token = 'changed'
  t.same(p.getUser('x1'), { id: 'secret_token_user', username: 'secret_token_user', scopes: ['read'] })
  t.equal(p.getUser('changed'), null)
})

t.test('only the exact token matches', async (t) => {
  const p = new SecretTokenAuthProvider({ tokens: [TOKEN] })
  t.ok(p.getUser(TOKEN))
  const near = [
    TOKEN.slice(0, -1), // prefix
    TOKEN.slice(1), // suffix
    TOKEN.slice(3, 10), // substring
    'abc123', // the lone-string trap: a substring
    'a', // one character of it
    TOKEN + 'x', // extended
    'x' + TOKEN,
    TOKEN + TOKEN,
    TOKEN.toLowerCase(),
    TOKEN.toUpperCase(),
    TOKEN.slice(0, -1) + (TOKEN.endsWith('Z') ? 'Y' : 'Z'), // same length, last char differs
    'Z' + TOKEN.slice(1), // same length, first char differs
    'x'.repeat(TOKEN.length), // same length
    '',
    ' ' + TOKEN
  ]
  for (const token of near) t.equal(p.getUser(token), null, JSON.stringify(token))
})

t.test('a lone string is never matched character by character', async (t) => {
  // Were `tokens: 'abc'` iterated, every one-letter token would pass. It is refused instead (above);
  // and a list holding that string accepts only the whole of it.
  const p = new SecretTokenAuthProvider({ tokens: ['abc'] })
  for (const token of ['a', 'b', 'c', 'ab', 'bc']) t.equal(p.getUser(token), null, token)
  t.ok(p.getUser('abc'))
})

t.test('many tokens: each resolves to its own user', async (t) => {
  const tokens = Array.from({ length: 10 }, (_, i) => ({ token: `service-${i}-token`, username: `svc${i}` }))
  const p = new SecretTokenAuthProvider({ tokens })
  for (let i = 0; i < 10; i++) t.equal(p.getUser(`service-${i}-token`)?.username, `svc${i}`)
  t.equal(p.getUser('service-10-token'), null)
  // the same secret listed twice: the last entry wins, deterministically
  const dup = new SecretTokenAuthProvider({ tokens: [{ token: 'same', username: 'first' }, { token: 'same', username: 'second' }] })
  t.equal(dup.getUser('same')?.username, 'second')
})

t.test('lists short and long: only the exact token, whatever its length or padding', async (t) => {
  for (const count of [10, 200]) {
    const tokens = Array.from({ length: count }, (_, i) => ({ token: `k${i}-` + 'x'.repeat(i % 37), username: `u${i}` }))
    const p = new SecretTokenAuthProvider({ tokens })
    for (const [i, { token }] of tokens.entries()) {
      t.equal(p.getUser(token)?.username, `u${i}`, `${count}: ${token}`)
      t.equal(p.getUser(token + '\0'), null, `${count}: NUL-padded`)
      t.equal(p.getUser(token.slice(0, -1)), null, `${count}: one shorter`)
      t.equal(p.getUser(token + 'y'), null, `${count}: one longer`)
    }
    t.equal(p.getUser('k1-' + 'x'.repeat(500)), null, `${count}: longer than every secret`)
    t.equal(p.getUser('\u0100'), null, `${count}: a character past Latin-1`)
  }
})

t.test('a secret of any length is recognised, short ones and ones past two SHA-256 blocks alike', async (t) => {
  // The presented token is hashed in JavaScript up to 119 characters, by node:crypto past that.
  const lengths = [1, 55, 56, 64, 118, 119, 120, 121, 500, 5000]
  const tokens = lengths.map((n, i) => ({ token: `${i}`.padEnd(n, 'z'), username: `len${n}` }))
  const p = new SecretTokenAuthProvider({ tokens })
  for (const { token, username } of tokens) {
    t.equal(p.getUser(token)?.username, username, `${token.length} characters`)
    t.equal(p.getUser(token.slice(0, -1) + 'y'), null, `${token.length} characters, the last one changed`)
  }
  t.equal(p.getUser('0'.padEnd(119, 'z') + '\u00e9'), null, '120 characters, one not ASCII')
  t.equal(p.getUser('0'.padEnd(118, 'z') + '\u00e9'), null, '119 characters, one not ASCII')
})
