/**
 * Paces the 429s of /login for a limit reached, per address. A refusal is cheap, but a client that
 * keeps asking as fast as it is answered (20 loops from one address, say) otherwise gets as many as
 * the event loop can serve: thousands a second, each with a read of the counters, and the CPU they
 * take is taken from everyone else's password checks (measured on one core: a correct login from
 * another address 2.5 to 4 times slower). So one address gets a burst of `perSecond` refusals at
 * once, then `perSecond` a second; a refusal past that is answered when its turn comes (at most
 * MAX_WAIT_MS later). That holds a flooding client to the pace whatever its connections, and delays
 * no one who is not refused.
 *
 * A generic cell rate algorithm: per address, the time its next refusal is due; entries whose time
 * has passed are dropped (at most once a second) once the map grows, so it holds the addresses
 * refused in the last moments.
 */
import { setTimeout as sleep } from 'node:timers/promises'

/** The longest a refusal waits for its turn: past that, a flood only queues further. */
export const MAX_WAIT_MS = 10_000
const SWEEP_AT = 10_000

export class RefusalPace {
  readonly #interval: number
  readonly #tolerance: number
  /** Per address: when its next refusal is due at the steady pace (ms, performance.now()). */
  readonly #due = new Map<string, number>()
  #sweptAt = 0

  constructor (perSecond: number) {
    this.#interval = 1000 / perSecond
    this.#tolerance = (perSecond - 1) * this.#interval // the burst
  }

  /** Resolves when a refusal to `address` may be answered. */
  async wait (address: string): Promise<void> {
    const now = performance.now()
    const due = Math.max(this.#due.get(address) ?? now, now)
    const at = Math.max(now, due - this.#tolerance)
    const wait = Math.min(at - now, MAX_WAIT_MS)
    // Capped too, so that a flood past MAX_WAIT_MS does not push the address's turn ever further.
    this.#due.set(address, Math.min(due + this.#interval, now + MAX_WAIT_MS + this.#tolerance))
    if (this.#due.size > SWEEP_AT && now - this.#sweptAt > 1000) this.#sweep(now)
    if (wait > 0) await sleep(wait)
  }

  #sweep (now: number): void {
    this.#sweptAt = now
    for (const [address, due] of this.#due) if (due <= now) this.#due.delete(address)
  }
}
