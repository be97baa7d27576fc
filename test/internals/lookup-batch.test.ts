// The lookup batcher on its own: what the database provider relies on when queries hang, fail in
// part, or pile up (the provider's end-to-end behaviour is in test/drizzle-provider.test.ts).
import t from 'tap'
import { LookupBatch, LookupBatchError } from '../../lib/providers/lookup-batch.js'

const OPTS = { maxBatch: 256, maxInflight: 4, timeout: 200, maxWaiting: 1000 }

t.test('queries that hang give their place back after the timeout: later lookups are answered', async (t) => {
  let calls = 0
  const batch = new LookupBatch<string>(async (keys) => {
    calls++
    if (calls <= 4) return await new Promise(() => {}) // never answers
    return new Map(keys.map((k) => [k, `row ${k}`]))
  }, OPTS)
  // Four lookups in four turns: four queries out, each hanging.
  const hung: Array<Promise<unknown>> = []
  for (let i = 0; i < 4; i++) {
    hung.push(batch.get(`hung${i}`).catch((err: unknown) => err))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const later = batch.get('later')
  const errors = await Promise.all(hung)
  t.ok(errors.every((e) => e instanceof LookupBatchError && /took over 200 ms/.test(e.message)), 'the hung lookups fail after the timeout')
  t.equal(await later, 'row later', 'a lookup asked meanwhile is answered by the next query')
  t.equal(calls, 5)
})

t.test('a key answered with an Error fails alone; the others of its query are answered', async (t) => {
  const batch = new LookupBatch<string>(async (keys) => new Map(keys.map((k) => [k, k === 'bad' ? new Error('no answer for bad') : `row ${k}`])), OPTS)
  const [a, bad, b] = await Promise.allSettled([batch.get('a'), batch.get('bad'), batch.get('b')])
  t.same([a, b].map((r) => r.status === 'fulfilled' ? r.value : r.reason), ['row a', 'row b'])
  t.equal(bad.status, 'rejected')
  t.match((bad as PromiseRejectedResult).reason, { message: 'no answer for bad' })
})

t.test('a key not in the answer is undefined (not found); past maxWaiting a lookup fails at once', async (t) => {
  const batch = new LookupBatch<string>(async (keys) => new Map(keys.filter((k) => k !== 'absent').map((k) => [k, k])), { ...OPTS, maxWaiting: 3 })
  const asked = ['one', 'two', 'absent', 'four'].map(async (k) => await batch.get(k).then((v) => v ?? null, (err: unknown) => err))
  const [one, two, absent, four] = await Promise.all(asked)
  t.same([one, two, absent], ['one', 'two', null])
  t.ok(four instanceof LookupBatchError, 'the fourth waiting key is refused at once')
})

t.test('one query carries at most maxBatch keys, and at most maxInflight are out', async (t) => {
  const sizes: number[] = []
  let out = 0
  let most = 0
  const batch = new LookupBatch<string>(async (keys) => {
    sizes.push(keys.length)
    most = Math.max(most, ++out)
    await new Promise((resolve) => setTimeout(resolve, 10))
    out--
    return new Map(keys.map((k) => [k, k]))
  }, { ...OPTS, maxBatch: 10, maxInflight: 2 })
  const keys = Array.from({ length: 95 }, (_, i) => `k${i}`)
  t.same(await Promise.all(keys.map(async (k) => await batch.get(k))), keys, 'every key answered with its own row')
  t.ok(sizes.every((n) => n <= 10), `query sizes ${sizes.join(',')}`)
  t.equal(sizes.reduce((a, b) => a + b, 0), 95)
  t.equal(most, 2, 'two queries out at most')
})
