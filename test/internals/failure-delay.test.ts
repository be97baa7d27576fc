// The growing delays on their own: who holds an address's one check, what ends it, and what a
// success may not undo. No waiting: every delay here lies in the future.
import t from 'tap'
import { FailureDelay } from '../../lib/routes/failure-delay.js'

const opts = { after: 2, base: 10_000, max: 40_000 }

t.test('the schedule: free up to `after`, then base doubling up to max', async (t) => {
  const d = new FailureDelay(opts)
  t.same([1, 2, 3, 4, 5, 6, 100].map((f) => d.delayAfter(f)), [0, 0, 10_000, 20_000, 40_000, 40_000, 40_000])
})

t.test('one check at a time past `after`; only its holder releases it', async (t) => {
  const d = new FailureDelay(opts)
  t.same(d.begin('a', 1), { holder: 0 }, 'below after: no hold')
  t.same(d.begin('a', 1), { holder: 0 }, 'and any number at once')
  const first = d.begin('a', 2)
  t.ok('holder' in first && first.holder > 0, 'at after: it holds the check')
  t.same(d.begin('a', 2), { wait: 1000 }, 'a second one waits a second')
  t.ok('holder' in d.begin('b', 2), 'another address is not held')
  d.ended('a', 12345) // an attempt that does not hold it
  t.same(d.begin('a', 2), { wait: 1000 }, 'still held')
  d.ended('a', (first as { holder: number }).holder)
  t.ok('holder' in d.begin('a', 2), 'released by its holder: the next one holds it')
})

t.test('a failure past `after` delays the next check; a success does not undo it', async (t) => {
  const d = new FailureDelay(opts)
  const h = d.begin('a', 2) as { holder: number }
  d.failed('a', 3)
  d.ended('a', h.holder) // the attempt is over (login.ts: finally)
  const w = d.begin('a', 3)
  t.ok('wait' in w && w.wait > 9_000 && w.wait <= 10_000, 'waits the base delay')
  d.ended('a', 0) // a success of an attempt that began before
  t.ok('wait' in d.begin('a', 3), 'still delayed')
  d.failed('a', 1) // a failure counted with a stale, low count
  const again = d.begin('a', 3)
  t.ok('wait' in again && again.wait > 9_000, 'a smaller delay never shortens a longer one')
})
