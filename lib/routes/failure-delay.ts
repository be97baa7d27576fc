/**
 * Growing delays between the password checks of an address that keeps failing. Past `after` failures
 * in the throttle's window, an address must wait `base` ms after its latest failure before its next
 * check, doubling with every further failure up to `max`; an attempt that comes sooner gets 429 with
 * Retry-After, without a check and without being counted. A few typos cost nothing; a guesser from one
 * address is soon down to a check a minute, long before its window's limit. A success does not
 * shorten a delay (else a guesser would log in to its own account between guesses).
 *
 * Past `after`, an address also has one check at a time: while its check runs (a hold, released when
 * the attempt ends, whatever its end), its other attempts get 429 with Retry-After 1; else a few sent
 * at once would all pass before the first failure set the delay.
 *
 * Why: on a small server one password check takes a core for a third of a second. Until an address
 * had spent its per-address limit, it could keep one check running at all times, and a correct login
 * from elsewhere that ran beside it took twice as long (bench/login-flood.ts). With the delays it gets
 * a handful of checks in the first seconds, then almost none.
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

/** The longest a hold lasts should its attempt never end (it always does: a safety net). */
const HOLD_MS = 60_000
/** What a refusal for a hold tells the client to wait: the check it waits for ends within a second or so. */
const HOLD_RETRY_MS = 1000
const SWEEP_AT = 10_000

interface State {
  /** Until when (ms, performance.now()) the address's next check must wait; 0: no delay. */
  until: number
  /** The attempt holding the address's one check (0: none), and until when at most. */
  holder: number
  holdUntil: number
}

export class FailureDelay {
  readonly #o: FailureDelayOptions
  readonly #states = new Map<string, State>()
  #holders = 0
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
   * For an attempt of this address, which has `failures` in the window: `{ wait }` (ms) when it must
   * wait, else `{ holder }`: the attempt goes on (holding the address's one check when past `after`;
   * 0 when it holds nothing), to be passed to `ended` when the attempt is over.
   */
  begin (address: string, failures: number): { wait: number } | { holder: number } {
    const now = performance.now()
    const s = this.#states.get(address)
    if (s !== undefined) {
      if (s.until > now) return { wait: s.until - now }
      if (s.holder !== 0 && s.holdUntil > now) return { wait: HOLD_RETRY_MS }
    }
    if (failures < this.#o.after) return { holder: 0 }
    const holder = ++this.#holders
    const state = s ?? this.#add(address, now)
    state.holder = holder
    state.holdUntil = now + HOLD_MS
    return { holder }
  }

  /** A failure of this address, its `failures`-th in the window: its next check waits. */
  failed (address: string, failures: number): void {
    const delay = this.delayAfter(failures)
    if (delay === 0) return
    const now = performance.now()
    const s = this.#states.get(address) ?? this.#add(address, now)
    s.until = Math.max(s.until, now + delay)
  }

  /** The attempt ended (any way): its hold, if it still has it, is released. */
  ended (address: string, holder: number): void {
    if (holder === 0) return
    const s = this.#states.get(address)
    if (s === undefined || s.holder !== holder) return
    s.holder = 0
    if (s.until <= performance.now()) this.#states.delete(address)
  }

  #add (address: string, now: number): State {
    if (this.#states.size >= SWEEP_AT && now - this.#sweptAt > 1000) {
      this.#sweptAt = now
      for (const [a, st] of this.#states) if (st.until <= now && (st.holder === 0 || st.holdUntil <= now)) this.#states.delete(a)
    }
    const s: State = { until: 0, holder: 0, holdUntil: 0 }
    this.#states.set(address, s)
    return s
  }
}
