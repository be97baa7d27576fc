/**
 * Growing delays between the password checks of an address that keeps failing. Past `after` failures
 * in the throttle's window, an address must wait `base` ms after its latest failure before its next
 * check, doubling with every further failure up to `max`; an attempt that comes sooner gets 429 with
 * Retry-After, without a check and without being counted. A few typos cost nothing; a guesser from one
 * address is soon down to a check a minute, long before its window's limit.
 *
 * Why: on a small server one password check takes a core for a third of a second. Until an address
 * had spent its per-address limit, it could keep one check running at all times, and a correct login
 * from elsewhere that ran beside it took twice as long (bench/login-flood.ts). With the delays it gets
 * a handful of checks in the first seconds, then almost none.
 *
 * Past `after`, an address also has one check at a time: while its check runs, its other attempts get
 * 429 (else a few sent at once would all pass before the first failure set the delay).
 *
 * The failure count is the throttle's (shared by every process); the time of the latest failure is
 * kept in this process (a bounded map, like refusal-pace.ts), because the delay protects this
 * process's CPU. An address the account logged in from is not delayed for that account.
 */

export interface FailureDelayOptions {
  /** Failures (of an address, in the throttle's window) that cost no delay. Default 5. */
  after: number
  /** The first delay, in ms. Default 1,000. */
  base: number
  /** The longest delay, in ms. Default 60,000. */
  max: number
}

const SWEEP_AT = 10_000

export class FailureDelay {
  readonly #o: FailureDelayOptions
  /** Per address: until when (ms, performance.now()) its next check must wait. */
  readonly #until = new Map<string, number>()
  #sweptAt = 0

  constructor (options: FailureDelayOptions) {
    this.#o = options
  }

  /** The delay after an address's `failures`-th failure, in ms (0: none). */
  delayAfter (failures: number): number {
    const { after, base, max } = this.#o
    if (failures <= after) return 0
    return Math.min(max, base * 2 ** Math.min(failures - after - 1, 30))
  }

  /**
   * Ms this address must still wait before its next check (0: none). When 0 and the address has
   * `failures` past `after`, its check begins: its other attempts wait until `failed` or `settled`.
   */
  begin (address: string, failures: number): number {
    const now = performance.now()
    const until = this.#until.get(address)
    if (until !== undefined && until > now) return until - now
    // Held for at most `max`, should the attempt end without a word (an error on the way).
    if (failures >= this.#o.after) this.#set(address, now + this.#o.max, now)
    return 0
  }

  /** The attempt that began ended without a failure (a success, or it never reached the check). */
  settled (address: string): void {
    this.#until.delete(address)
  }

  /** Records a failure of this address, its `failures`-th in the window: the next check waits. */
  failed (address: string, failures: number): void {
    const delay = this.delayAfter(failures)
    if (delay > 0) this.#set(address, performance.now() + delay, performance.now())
  }

  #set (address: string, until: number, now: number): void {
    this.#until.set(address, until)
    if (this.#until.size > SWEEP_AT && now - this.#sweptAt > 1000) {
      this.#sweptAt = now
      for (const [a, until] of this.#until) if (until <= now) this.#until.delete(a)
    }
  }
}
