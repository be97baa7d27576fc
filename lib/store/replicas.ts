/**
 * Read replicas for the token lookup: which server answers a read. The rule is that a replica may
 * only say yes: whatever it cannot confirm (not found, expired, inactive) is asked again of the
 * primary, so replication lag never turns a token just issued into a 401. Besides that:
 *
 * - replicas are taken in turn (round-robin); one that fails or is slower than `timeout` is left
 *   alone for `retry` ms and the read goes to the primary (never a 503 because of a replica);
 * - lag: every `maxLag / 2` ms the primary's WAL position is sampled and each replica's replay
 *   position read; a replica is used only while it is known to have replayed everything the primary
 *   had `maxLag` ms ago (so an idle primary does not make a replica look late, as
 *   pg_last_xact_replay_timestamp() would, and paused replay does);
 * - rows known to have changed (a revocation this process made or heard of by NOTIFY, a user
 *   changed) are read from the primary for `RECENT_MS`, whatever the replicas' lag;
 * - the primary unreachable: replicas go on answering yes (nothing can be revoked meanwhile), every
 *   other answer needs the primary and is "unavailable".
 */
import type { TokenAuthDatabase } from './database.js'

/** How long a changed row's reads go to the primary: far past any lag a replica is used with. */
export const RECENT_MS = 60_000
/** Changed rows remembered; past that every read goes to the primary for RECENT_MS (safe, bounded). */
export const RECENT_MAX = 10_000

export interface Replica {
  db: TokenAuthDatabase
  /** `select ...` on this server; used for the WAL positions. */
  query: (text: string) => Promise<Array<Record<string, unknown>>>
}

export interface ReplicaSetOptions {
  /** A replica further behind the primary than this (ms) is not read from; `false`: lag not checked. */
  maxLag: number | false
  /** ms a replica that failed is left alone before it is tried again. */
  retry: number
  /** ms a replica read may take before the primary is asked instead. */
  timeout: number
}

/** Counters of where the lookups went (the provider's `metrics().lookups`). */
export interface ReadCounts { replicaQueries: number, primaryFallbacks: number }

interface ReplicaState extends Replica {
  /** Not read from before this time (it failed). */
  downUntil: number
  /** Known to be within maxLag until this time. */
  freshUntil: number
}

/**
 * readEach: the primary failed after a replica had confirmed some of the keys. `rows` are those
 * (still good: a replica may say yes while the primary is away); the other keys have no answer.
 */
export class PartialReadError<R> extends Error {
  override name = 'PartialReadError'
  constructor (readonly rows: R[], cause: unknown) {
    super('the primary failed; only the rows a replica confirmed are known', { cause })
  }
}

/** A read or check that took over `timeout` ms (the query itself goes on). */
class SlowAnswer extends Error {}

/** An LSN ('16/B374D848') as a number of bytes (exact up to 2^53, i.e. 8 PiB of WAL). */
export function lsnBytes (lsn: string): number {
  const [hi, lo] = lsn.split('/')
  return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16)
}

export class ReplicaSet {
  readonly #primary: Replica
  readonly #replicas: ReplicaState[]
  readonly #opts: ReplicaSetOptions
  /** Keys (token hashes, `user:<id>`) whose rows changed lately → the time they stop counting. */
  readonly #recent = new Map<string, number>()
  /** Every read goes to the primary until then (too many changes, or missed notifications). */
  #primaryOnlyUntil = 0
  #next = 0
  /** The primary's WAL position sampled at `at` (the time the sample was asked for), oldest first. */
  readonly #samples: Array<{ at: number, lsn: number }> = []
  #primaryUnreachable = false
  #timer: NodeJS.Timeout | undefined
  #checking: Promise<void> | undefined
  readonly #firstCheck: Promise<void>

  constructor (primary: Replica, replicas: readonly Replica[], opts: ReplicaSetOptions) {
    this.#primary = primary
    this.#opts = opts
    this.#replicas = replicas.map((r) => ({ ...r, downUntil: 0, freshUntil: 0 }))
    if (opts.maxLag === false) {
      this.#firstCheck = Promise.resolve()
      return
    }
    this.#firstCheck = this.checkLag()
    this.#timer = setInterval(() => { this.checkLag().catch(() => {}) }, Math.max(25, Math.floor(opts.maxLag / 2)))
    this.#timer.unref()
  }

  /** How many replicas there are. */
  get size (): number {
    return this.#replicas.length
  }

  /** Resolves when the first lag check is done (until then no replica is read from). */
  async checked (): Promise<void> {
    await this.#firstCheck
  }

  /** These rows changed on the primary: read them from the primary for a while. */
  changed (keys: Iterable<string>): void {
    const now = Date.now()
    for (const key of keys) {
      this.#recent.delete(key) // re-inserted last: the Map stays in expiry order
      this.#recent.set(key, now + RECENT_MS)
    }
    this.#prune(now)
    if (this.#recent.size > RECENT_MAX) {
      this.#recent.clear()
      this.primaryOnly()
    }
  }

  /** True when `key`'s row changed lately (or every read goes to the primary for now). */
  changedLately (key: string): boolean {
    return this.#recentlyChanged([key], Date.now())
  }

  /** Read everything from the primary for a while (e.g. revocation notices may have been missed). */
  primaryOnly (): void {
    this.#primaryOnlyUntil = Date.now() + RECENT_MS
  }

  /**
   * Reads the rows of `keys`: from a replica, then from the primary for every key the replica could
   * not answer with a row `trust` accepts (not found, not a yes), for every key whose row changed
   * lately, and for all of them when no replica may answer or the replica failed. At most one query
   * on each. When the primary fails after the replica confirmed some keys: PartialReadError.
   */
  async readEach<R> (keys: readonly string[], run: (db: TokenAuthDatabase, keys: string[]) => Promise<R[]>,
    keyOf: (row: R) => string, trust: (row: R) => boolean, counts?: ReadCounts): Promise<R[]> {
    const now = Date.now()
    let rest = [...keys]
    const found: R[] = []
    const replica = now < this.#primaryOnlyUntil ? undefined : this.#pick(now)
    const ask = replica === undefined ? [] : rest.filter((key) => !this.#recentlyChanged([key], now))
    if (replica !== undefined && ask.length > 0) {
      if (counts !== undefined) counts.replicaQueries++
      try {
        const rows = await this.#bounded(run(replica.db, ask))
        const answered = new Set<string>()
        for (const row of rows) {
          if (!trust(row)) continue
          found.push(row)
          answered.add(keyOf(row))
        }
        if (answered.size > 0) rest = rest.filter((key) => !answered.has(key))
      } catch {
        // Down, partitioned or slow: the primary answers meanwhile.
        replica.downUntil = Date.now() + this.#opts.retry
        replica.freshUntil = 0
      }
    }
    if (rest.length === 0) return found
    if (counts !== undefined) counts.primaryFallbacks++
    let fromPrimary: R[]
    try {
      fromPrimary = await run(this.#primary.db, rest)
    } catch (err) {
      // The rows the replica confirmed stay good; only the rest has no answer.
      if (found.length === 0) throw err
      throw new PartialReadError(found, err)
    }
    return found.length === 0 ? fromPrimary : found.concat(fromPrimary)
  }

  #recentlyChanged (keys: readonly string[], now: number): boolean {
    if (now < this.#primaryOnlyUntil) return true
    if (this.#recent.size === 0) return false
    for (const key of keys) {
      const until = this.#recent.get(key)
      if (until !== undefined && until > now) return true
    }
    return false
  }

  #prune (now: number): void {
    for (const [key, until] of this.#recent) {
      if (until > now) break
      this.#recent.delete(key)
    }
  }

  /** The next replica that is up and (lag checked) fresh, round-robin; undefined when none is. */
  #pick (now: number): ReplicaState | undefined {
    const n = this.#replicas.length
    for (let i = 0; i < n; i++) {
      const r = this.#replicas[(this.#next + i) % n]
      if (r.downUntil > now) continue
      if (this.#opts.maxLag !== false && r.freshUntil <= now && !this.#primaryUnreachable) continue
      this.#next = (this.#next + i + 1) % n
      return r
    }
    return undefined
  }

  #bounded<T> (promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new SlowAnswer(`no answer within ${this.#opts.timeout} ms`)), this.#opts.timeout)
    })
    return Promise.race([promise, late]).finally(() => clearTimeout(timer))
  }

  /** One lag check (the timer runs them; a check still running is not started again). */
  checkLag (): Promise<void> {
    this.#checking ??= this.#checkLag().finally(() => { this.#checking = undefined })
    return this.#checking
  }

  async #checkLag (): Promise<void> {
    const maxLag = this.#opts.maxLag
    if (maxLag === false) return
    const at = Date.now()
    try {
      const [row] = await this.#bounded(this.#primary.query('select pg_current_wal_lsn()::text as lsn'))
      this.#samples.push({ at, lsn: lsnBytes(row.lsn as string) })
      this.#primaryUnreachable = false
    } catch (err) {
      // Nothing can be revoked while the primary is away: the replicas' yes stays good. A slow answer
      // (a busy pool) says nothing either way: no new sample, so the replicas' freshness runs out
      // (a partition ends in postgres.js's connect timeout, an error).
      if (!(err instanceof SlowAnswer)) this.#primaryUnreachable = true
    }
    // Samples older than 2 × maxLag (and a few) are no longer needed to date a replay position.
    while (this.#samples.length > 2 && this.#samples[1].at < Date.now() - 2 * maxLag - 1000) this.#samples.shift()
    await Promise.all(this.#replicas.map(async (r) => {
      try {
        const [row] = await this.#bounded(r.query('select pg_last_wal_replay_lsn()::text as lsn'))
        if (r.downUntil > Date.now()) r.downUntil = 0 // it answers again
        // Not a physical standby (no replay position): there is no lag to measure.
        if (row.lsn === null) { r.freshUntil = Date.now() + maxLag; return }
        const replayed = lsnBytes(row.lsn as string)
        // The newest sample it has replayed: everything the primary had then, the replica has now,
        // so it is within maxLag until that sample's time + maxLag.
        for (let i = this.#samples.length - 1; i >= 0; i--) {
          if (this.#samples[i].lsn <= replayed) { r.freshUntil = Math.max(r.freshUntil, this.#samples[i].at + maxLag); break }
        }
      } catch {
        r.downUntil = Date.now() + this.#opts.retry
        r.freshUntil = 0
      }
    }))
  }

  /** Stops the lag checks (the pools are closed by their owner). */
  close (): void {
    clearInterval(this.#timer)
  }
}
