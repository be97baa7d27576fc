/**
 * Lookups of different tokens asked for in the same turn of the event loop share one query: the
 * keys are gathered until the check phase (`setImmediate`, after the poll phase has read every
 * request that arrived), then sent as one `= ANY($1)` query of at most `maxBatch` keys. At most
 * `maxInflight` queries are out at once; keys asked for meanwhile wait for the next one, so a flood
 * of cold or unknown tokens costs a bounded number of queries in flight, each carrying up to
 * `maxBatch` of them. A lone lookup waits for nothing but the end of its turn.
 */

export interface LookupBatchOptions {
  /** Keys in one query at most. */
  maxBatch: number
  /** Queries out at once at most. */
  maxInflight: number
}

/** Runs one query for these keys; the answer has an entry for each key found. */
export type BatchRunner<R> = (keys: string[]) => Promise<Map<string, R>>

interface Waiter<R> {
  resolve: (value: R | undefined) => void
  reject: (err: unknown) => void
}

export class LookupBatch<R> {
  readonly #run: BatchRunner<R>
  readonly #opts: LookupBatchOptions
  /** Keys waiting for a query, in the order asked. */
  readonly #pending = new Map<string, Array<Waiter<R>>>()
  #scheduled = false
  #inflight = 0

  constructor (run: BatchRunner<R>, opts: LookupBatchOptions) {
    this.#run = run
    this.#opts = opts
  }

  /** The row for `key`, or undefined when the query found none; rejects when the query failed. */
  async get (key: string): Promise<R | undefined> {
    return await new Promise<R | undefined>((resolve, reject) => {
      const waiters = this.#pending.get(key)
      if (waiters !== undefined) waiters.push({ resolve, reject })
      else this.#pending.set(key, [{ resolve, reject }])
      this.#schedule()
    })
  }

  /** Keys waiting for a query (for tests and metrics). */
  get waiting (): number {
    return this.#pending.size
  }

  #schedule (): void {
    if (this.#scheduled || this.#inflight >= this.#opts.maxInflight) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#flush()
    })
  }

  #flush (): void {
    while (this.#pending.size > 0 && this.#inflight < this.#opts.maxInflight) {
      const batch = new Map<string, Array<Waiter<R>>>()
      for (const [key, waiters] of this.#pending) {
        batch.set(key, waiters)
        this.#pending.delete(key)
        if (batch.size >= this.#opts.maxBatch) break
      }
      this.#inflight++
      this.#send(batch)
    }
  }

  #send (batch: Map<string, Array<Waiter<R>>>): void {
    let answer: Promise<Map<string, R>>
    try {
      answer = this.#run([...batch.keys()])
    } catch (err) {
      answer = Promise.reject(err)
    }
    answer.then((rows) => {
      for (const [key, waiters] of batch) for (const w of waiters) w.resolve(rows.get(key))
    }, (err: unknown) => {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err)
    }).finally(() => {
      this.#inflight--
      // What was asked for while the queries were out goes next, in this turn (it has waited already).
      if (this.#pending.size > 0) this.#flush()
    }).catch(() => {})
  }
}
