/**
 * `--pin-pg`: moves the PostgreSQL backends serving one database to one core (`taskset -pc`), so that
 * in the database scenarios they do not share core 0 with the server being measured. Backends a pool
 * opens later are not pinned, so run.ts calls this before every measurement.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import postgres from 'postgres'

const run = promisify(execFile)

export async function pinBackends (adminUrl: string, database: string, core: number): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    const rows = await sql<Array<{ pid: number }>>`select pid from pg_stat_activity where datname = ${database} and pid <> pg_backend_pid()`
    // A backend may have gone meanwhile, or taskset may not be allowed: say so once, keep going.
    await Promise.all(rows.map(async ({ pid }) => {
      await run('taskset', ['-pc', String(core), String(pid)]).catch((err: Error) => {
        if (!warned) { warned = true; console.warn(`--pin-pg: taskset -pc ${core} ${pid}: ${err.message.split('\n')[0]}`) }
      })
    }))
  } finally {
    await sql.end({ timeout: 5 })
  }
}
let warned = false
