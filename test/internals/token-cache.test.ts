// The provider's token cache on its own: deadlines, the size bound, least-recently-used eviction,
// forgetting a user's tokens. Time is passed in, so nothing here waits.
import t from 'tap'
import { TokenCache, type CachedToken } from '../../lib/providers/token-cache.js'

const entry = (hash: string, userKey = '1', expiresAt: number | null = null): CachedToken => ({
  hash, user: { id: Number(userKey), username: `u${userKey}`, scopes: [] } as unknown as CachedToken['user'], userKey, tokenId: 1, expiresAt, createdAt: 0, lastUsedAt: 0
})
const opts = { max: 3, ttl: 60_000, negativeTtl: 5_000, negativeMax: 10 }

t.test('a good token is kept for the ttl, and never past its own expiry', async (t) => {
  const c = new TokenCache(opts)
  c.set('a', entry('a'), 1_000)
  t.equal(c.good('a', 1_000)?.hash, 'a')
  t.equal(c.good('a', 60_999)?.hash, 'a')
  t.equal(c.good('a', 61_000), undefined, 'the ttl is over')
  t.equal(c.good('a', 1_000), undefined, 'and an expired entry is gone')
  c.set('b', entry('b', '1', 11_000), 1_000)
  t.equal(c.good('b', 10_999)?.hash, 'b')
  t.equal(c.good('b', 11_000), undefined, 'the token\'s expiry comes first')
  c.set('gone', entry('gone', '1', 500), 1_000)
  t.equal(c.good('gone', 1_000), undefined, 'an already expired token is not kept')
})

t.test('past max, the least recently used goes; a hit counts as a use (to a second)', async (t) => {
  const c = new TokenCache(opts)
  c.set('a', entry('a'), 0)
  c.set('b', entry('b'), 0)
  c.set('c', entry('c'), 0)
  t.ok(c.good('a', 2_000), 'a is used again')
  c.set('d', entry('d'), 2_000)
  t.same(['a', 'b', 'c', 'd'].map((h) => c.good(h, 2_500)?.hash), ['a', undefined, 'c', 'd'], 'b, the least recent, went')
  c.set('e', entry('e'), 2_600)
  // The reads at 2,500: c moved to the end (its last move was at 0); a and d had moved less than a
  // second before (at 2,000), so they stayed. The order is a, d, c, then e: a goes.
  t.same(['a', 'c', 'd', 'e'].map((h) => c.good(h, 2_700)?.hash !== undefined), [false, true, true, true], 'then a, the least recent to the second')
})

t.test('forgetting one token, a user\'s tokens, everything; and the unknown ones', async (t) => {
  const c = new TokenCache({ ...opts, max: 10 })
  for (const [h, u] of [['a', '1'], ['b', '2'], ['c', '1']]) c.set(h, entry(h, u), 0)
  c.setUnknown('x')
  c.setUnknown('y', '1')
  const epoch = c.epoch
  c.invalidateUser('1')
  t.same(['a', 'b', 'c'].map((h) => c.good(h, 1)?.hash), [undefined, 'b', undefined])
  t.same([c.unknown('x'), c.unknown('y')], [true, false], 'an inactive user\'s unknown tokens go with the user')
  t.ok(c.epoch > epoch, 'the epoch moved')
  c.invalidate(['b', 'x'])
  t.same([c.good('b', 1), c.unknown('x')], [undefined, false])
  c.set('d', entry('d'), 0)
  c.clear()
  t.equal(c.good('d', 1), undefined)
  const off = new TokenCache(false)
  off.set('a', entry('a'), 0)
  t.equal(off.good('a', 0), undefined, 'cache: false keeps nothing')
  t.equal(off.enabled, false)
})
