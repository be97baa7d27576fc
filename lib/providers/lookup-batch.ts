/**
 * Lookups of different tokens asked for in the same turn of the event loop share one query: the
 * keys are gathered until the check phase (`setImmediate`, after the poll phase has read every
 * request that arrived), then sent as one `= ANY($1)` query of at most `maxBatch` keys. At most
 * `maxInflight` queries are out at once; keys asked for meanwhile wait for the next one, so a flood
 * of cold or unknown tokens costs a bounded number of queries in flight, each carrying up to
 * `maxBatch` of them. A lone lookup waits for nothing but the end of its turn.
 *
 * A query that has not answered within `timeout` ms fails its keys and gives its place back (the
 * query itself may go on; its answer is then dropped), so queries that hang cannot stop every later
 * lookup. Past `maxWaiting` keys waiting, a new one fails at once.
 */

export interface LookupBatchOptions {
  /** Keys in one query at most. */
  maxBatch: number
  /** Queries out at once at most. */
  maxInflight: number
  /** ms a query may take before its keys fail and its place is given back. */
  timeout: number
  /** Keys waiting for a query at most. */
  maxWaiting: number
}

/** A lookup that could not be answered (no place in a query, or its query took too long). */
export class LookupBatchError extends Error {
  override name = 'LookupBatchError'
}

/**
 * Runs one query for these keys; the answer has an entry for each key found, and an Error for a key
 * that could not be answered (the others still are).
 */
export type BatchRunner<R> = (keys: string[]) => Promise<Map<string, R | Error>>

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
      else if (this.#pending.size >= this.#opts.maxWaiting) return reject(new LookupBatchError(`${this.#opts.maxWaiting} lookups waiting already`))
      else this.#pending.set(key, [{ resolve, reject }])
      this.#schedule()
    })
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
    let settled = false
    const settle = (): boolean => {
      if (settled) return false
      settled = true
      clearTimeout(timer)
      this.#inflight--
      return true
    }
    const failAll = (err: unknown): void => {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err)
    }
    const timer = setTimeout(() => {
      if (!settle()) return
      failAll(new LookupBatchError(`token lookup took over ${this.#opts.timeout} ms`))
      this.#next()
    }, this.#opts.timeout)
    let answer: Promise<Map<string, R | Error>>
    try {
      answer = this.#run([...batch.keys()])
    } catch (err) {
      answer = Promise.reject(err)
    }
    answer.then((rows) => {
      if (!settle()) return
      for (const [key, waiters] of batch) {
        const row = rows.get(key)
        for (const w of waiters) {
          if (row instanceof Error) w.reject(row)
          else w.resolve(row)
        }
      }
      this.#next()
    }, (err: unknown) => {
      if (!settle()) return
      failAll(err)
      this.#next()
    })
  }

  /** What was asked for while the queries were out goes next, in this turn (it has waited already). */
  #next (): void {
    if (this.#pending.size > 0) this.#flush()
  }
}
