// Bounds and shares out the password derivations. scrypt runs on libuv's thread pool, off the event
// loop, but derivations on every core still starve the event loop's: a flood of logins would stall
// every other request. So at most `concurrency` run at once (the cores less one), plus `reserved`
// more for trusted clients (an address the account logged in from, or with no failure yet), so that
// a flood from a few clients cannot hold every slot.
//
// Each job names its clients (its address and its account): a client has at most one derivation
// running and `perClientWaiting` waiting, past which its next one is refused at once
// (ClientBusyError: the login route answers 429 and counts it against the client). Of the waiting
// jobs that can start, the one whose clients were served longest ago goes first, so clients take
// turns: one client's queue never keeps another waiting behind all of it.
// When `maxWaiting` wait in all, a refusable job (a login) fails at once (KdfBusyError, 503); the
// app's own work (creating users, setting passwords) is never refused and names no client.
import { availableParallelism } from 'node:os'
import { ClientBusyError, KdfBusyError } from './errors.js'

export interface KdfQueueOptions {
  /** Derivations at once for anyone. */
  concurrency: number
  /** More at once, for trusted clients only. Default 0. */
  reserved?: number
  /** Derivations allowed to wait in all. */
  maxWaiting: number
  /** Derivations one client may have waiting (beside its running one). Default 2. */
  perClientWaiting?: number
}

export interface KdfJobOptions {
  /** Who asks (e.g. `ip:…` and `account:…`); none for the app's own work. */
  clients?: readonly string[]
  /** May use the reserved slots. */
  trusted?: boolean
  /** A login: refused rather than queued without bound. Default true. */
  refusable?: boolean
}

/** The default number of derivations at once: the cores less one for the event loop, at least 1. */
export const defaultKdfConcurrency = (): number => Math.max(1, availableParallelism() - 1)

interface Job { clients: readonly string[], trusted: boolean, slot: 'general' | 'extra', start: () => void }

export class KdfQueue {
  readonly concurrency: number
  readonly reserved: number
  readonly maxWaiting: number
  readonly perClientWaiting: number
  #general = 0
  #extra = 0
  readonly #waiting: Job[] = []
  /** Per client: 1 while one of its jobs runs, the number waiting, and when one of its jobs last started. */
  readonly #clients = new Map<string, { running: number, waiting: number, served: number }>()
  #tick = 0

  constructor (options: KdfQueueOptions) {
    this.concurrency = options.concurrency
    this.reserved = options.reserved ?? 0
    this.maxWaiting = options.maxWaiting
    this.perClientWaiting = options.perClientWaiting ?? 2
  }

  /** Runs `work` when a slot is free and none of its clients is running another; see the header. */
  async run<T> (work: () => Promise<T>, options: KdfJobOptions = {}): Promise<T> {
    const { clients = [], trusted = false, refusable = true } = options
    const job: Job = { clients, trusted, slot: 'general', start: () => {} }
    if (this.#startable(job)) {
      this.#take(job)
    } else {
      for (const c of clients) if ((this.#clients.get(c)?.waiting ?? 0) >= this.perClientWaiting) throw new ClientBusyError()
      if (refusable && this.#waiting.length >= this.maxWaiting) throw new KdfBusyError()
      for (const c of clients) this.#state(c).waiting++
      await new Promise<void>((resolve) => { job.start = resolve; this.#waiting.push(job) })
    }
    try {
      return await work()
    } finally {
      this.#release(job)
    }
  }

  #startable (job: Job): boolean {
    for (const c of job.clients) if ((this.#clients.get(c)?.running ?? 0) > 0) return false
    return this.#general < this.concurrency || (job.trusted && this.#extra < this.reserved)
  }

  #take (job: Job): void {
    if (this.#general < this.concurrency) {
      this.#general++
      job.slot = 'general'
    } else {
      this.#extra++
      job.slot = 'extra'
    }
    this.#tick++
    for (const c of job.clients) {
      const s = this.#state(c)
      s.running = 1
      s.served = this.#tick
    }
  }

  #release (job: Job): void {
    if (job.slot === 'general') this.#general--
    else this.#extra--
    for (const c of job.clients) {
      const s = this.#clients.get(c)
      if (s !== undefined) s.running = 0
    }
    // Start waiting jobs while some can start: each time, the one whose clients were served longest ago.
    for (;;) {
      let best = -1
      let bestServed = Infinity
      for (let i = 0; i < this.#waiting.length; i++) {
        const candidate = this.#waiting[i]
        if (!this.#startable(candidate)) continue
        const served = Math.max(-1, ...candidate.clients.map((c) => this.#clients.get(c)?.served ?? -1))
        if (served < bestServed) { best = i; bestServed = served }
      }
      if (best === -1) break
      const [next] = this.#waiting.splice(best, 1)
      for (const c of next.clients) this.#state(c).waiting--
      this.#take(next)
      next.start()
    }
    for (const c of job.clients) {
      const s = this.#clients.get(c)
      if (s !== undefined && s.running === 0 && s.waiting === 0) this.#clients.delete(c)
    }
  }

  #state (client: string): { running: number, waiting: number, served: number } {
    let s = this.#clients.get(client)
    if (s === undefined) {
      s = { running: 0, waiting: 0, served: -1 }
      this.#clients.set(client, s)
    }
    return s
  }
}
