/**
 * Failed logins take the same time, whatever the cost of the hash behind them: an unknown user, a
 * wrong password, an inactive user and a user whose hash has another cost than the service's all
 * answer after the time of one check at the highest cost in use (the unknown user's dummy check runs
 * at that cost). A check that was quicker (a cheaper hash) is padded with a wait, taken after its
 * password slot is given back, so the padding costs no capacity.
 *
 * The target is the median duration of the recent checks of that cost, measured on the checks
 * themselves (queueing excluded). A check of a cheaper cost is padded to what the costlier check
 * would take now: its own duration times the ratio of the two costs, so the padding follows the load
 * at once instead of lagging behind the recent median (a load that starts or stops would otherwise
 * tell the two apart for a while). The ratio is measured (the medians of both costs) and kept within
 * [0.8, 1.6] of the ratio the parameters predict (N·r·p), so that medians taken under different
 * loads cannot skew it far. The bounds are wide because scrypt's time is not linear in N: a small N
 * fits the CPU's caches (on this project's machine ln=17 takes 4.2 × ln=15 and 10.5 × ln=14).
 */
import { setTimeout as sleep } from 'node:timers/promises'

const SAMPLES = 31
/** The cost ratio is taken only from samples this recent (both costs under about the same load). */
const RATIO_WINDOW_MS = 60_000

interface Sample { ms: number, at: number }

export class EqualTime {
  readonly #samples = new Map<string, Sample[]>()

  /** Records how long a check of cost `key` took, in ms. */
  record (key: string, ms: number): void {
    let list = this.#samples.get(key)
    if (list === undefined) {
      list = []
      this.#samples.set(key, list)
    }
    list.push({ ms, at: Date.now() })
    if (list.length > SAMPLES) list.shift()
  }

  /**
   * The duration a failed check should take for cost `key` (undefined: fewer than 3 samples), from
   * the samples since `since` (ms since epoch; default: all kept).
   */
  target (key: string, quantile = 0.5, since = 0): number | undefined {
    const list = this.#samples.get(key)?.filter((s) => s.at >= since)
    if (list === undefined || list.length < 3) return undefined
    const sorted = list.map((s) => s.ms).sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.floor(quantile * sorted.length))]
  }

  /**
   * Waits until a check of cost `key` that took `tookMs` has taken as long as one of cost `toward`
   * would have: `tookMs` times their ratio, measured on both costs' samples of the last minute and
   * kept near `expected` (what the parameters predict). Without 3 recent samples of each, the recent
   * median of `toward` is the goal; without that either, `expected` alone.
   */
  async padToward (key: string, tookMs: number, toward: string, expected: number): Promise<void> {
    const since = Date.now() - RATIO_WINDOW_MS
    const own = this.target(key, 0.5, since)
    // Both medians over the same span, so under the same mix of loads: the costlier cost's samples
    // since the cheaper one's oldest recent sample (those of the whole minute when too few). A cheaper
    // cost is checked seldom, and a load that started since then slowed only the costlier's samples.
    const from = this.#oldest(key, since)
    const other = (from === undefined ? undefined : this.target(toward, 0.5, from)) ?? this.target(toward, 0.5, since)
    let goal: number
    if (own !== undefined && other !== undefined && own > 0) {
      goal = tookMs * Math.min(expected * 1.6, Math.max(expected * 0.8, other / own))
    } else {
      goal = this.target(toward) ?? tookMs * expected
    }
    if (goal > tookMs) await sleep(goal - tookMs)
  }

  /** When the oldest sample of `key` since `since` was taken (undefined: none). */
  #oldest (key: string, since: number): number | undefined {
    return this.#samples.get(key)?.find((s) => s.at >= since)?.at
  }

  /** Waits the rest of `target(key)` after a check that took `tookMs`. */
  async pad (key: string, tookMs: number, quantile?: number): Promise<void> {
    const target = this.target(key, quantile)
    if (target !== undefined && target > tookMs) await sleep(target - tookMs)
  }
}
