// Bounds how many password derivations run at once. scrypt runs on libuv's thread pool, off the event
// loop, but four 128 MiB derivations on a 2-core machine still starve the event loop's core: a flood
// of logins would stall every other request. Derivations beyond the limit wait in order; when too
// many wait, the next one fails at once (the login route answers 503), rather than queueing minutes.
import { availableParallelism } from 'node:os'
import { KdfBusyError } from './errors.js'

export interface KdfQueueOptions {
  /** Derivations at once. Default: the cores less one for the event loop, at least 1. */
  concurrency: number
  /** Derivations allowed to wait. */
  maxWaiting: number
}

/** The default number of derivations at once: the cores less one for the event loop, at least 1. */
export const defaultKdfConcurrency = (): number => Math.max(1, availableParallelism() - 1)

export class KdfQueue {
  readonly concurrency: number
  readonly maxWaiting: number
  #running = 0
  readonly #waiting: Array<() => void> = []

  /** @param options checked by the service's options (passwordConcurrency, passwordQueue) */
  constructor (options: KdfQueueOptions) {
    this.concurrency = options.concurrency
    this.maxWaiting = options.maxWaiting
  }

  /**
   * Runs `work` when a slot is free. `refusable` work (a login) fails with KdfBusyError when
   * `maxWaiting` are already waiting; the app's own work (creating users, setting passwords) waits.
   */
  async run<T> (work: () => Promise<T>, refusable = true): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (refusable && this.#waiting.length >= this.maxWaiting) throw new KdfBusyError()
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    } else {
      this.#running++
    }
    try {
      return await work()
    } finally {
      // Hand the slot straight to the next in line (the count stays), or give it back.
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#running--
    }
  }
}
