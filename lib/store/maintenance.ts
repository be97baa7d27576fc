/**
 * The server's own housekeeping, on a timer, one process at a time: expired tokens are pruned (each
 * one a `token.expired` event, like `fastify-token-auth token prune`), throttle counters whose window
 * ended are swept, and events older than their retention are deleted. On PostgreSQL a transaction-level
 * advisory lock (`pg_try_advisory_xact_lock`) lets one process of many do it and the others skip that
 * round; the embedded database has one process anyway.
 */
import { lt, sql } from 'drizzle-orm'
import type { TokenAuthDatabase } from './database.js'
import { events } from './schema.js'
import type { TokenService } from './service.js'
import type { ThrottleStore } from './throttle-store.js'

/** The advisory lock key (bigint) a maintenance round holds, the bytes of 'tokmaint'. */
export const MAINTENANCE_LOCK_KEY = 0x746f6b6d61696e74n

export interface MaintenanceOptions {
  service: TokenService
  throttle?: ThrottleStore
  /** Run every this many ms. */
  interval: number
  /** The embedded database: no lock needed (and a transaction there would hold its one connection). */
  embedded: boolean
  onError: (err: unknown) => void
}

export interface Maintenance {
  /** One round now (the timer's work); resolves to what it did, or null when another process holds the lock. */
  run: () => Promise<{ pruned: number, swept: number, events: number } | null>
  stop: () => Promise<void>
}

export function startMaintenance (o: MaintenanceOptions): Maintenance {
  const { service } = o
  const work = async (): Promise<{ pruned: number, swept: number, events: number }> => {
    const pruned = await service.pruneExpired()
    const swept = await o.throttle?.sweep?.() ?? 0
    const retention = service.options.events.retention
    let removed = 0
    if (service.options.events.table && retention !== false) {
      const gone = await service.db.delete(events).where(lt(events.at, sql`now() - make_interval(secs => ${retention})`)).returning({ id: events.id })
      removed = gone.length
    }
    return { pruned, swept, events: removed }
  }
  let running: Promise<unknown> | undefined
  const run = async (): Promise<{ pruned: number, swept: number, events: number } | null> => {
    if (o.embedded) return await work()
    return await locked(service.db, work)
  }
  const timer = setInterval(() => {
    running ??= run().catch(o.onError).finally(() => { running = undefined })
  }, o.interval)
  timer.unref()
  return {
    run,
    async stop () {
      clearInterval(timer)
      await running
    }
  }
}

/** `work` under the advisory lock held by an open transaction (on its own connection), or null. */
async function locked<T> (db: TokenAuthDatabase, work: () => Promise<T>): Promise<T | null> {
  return await db.transaction(async (tx) => {
    const result = await tx.execute(sql`select pg_try_advisory_xact_lock(${MAINTENANCE_LOCK_KEY.toString()}::bigint) as got`)
    const [row] = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{ got: boolean }>
    return row.got ? await work() : null
  })
}
