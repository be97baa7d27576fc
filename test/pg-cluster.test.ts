// The throwaway cluster of test/helpers/pg-cluster.ts: a row reaches the replica, paused replay holds
// it back (lag > 0) until resumed, the replica stops and starts, and stop() leaves nothing behind.
// No fixed sleeps: every wait is a poll with a generous deadline, so a busy machine only makes it slower.
import { existsSync } from 'node:fs'
import * as net from 'node:net'
import postgres from 'postgres'
import t from 'tap'
import { PgClusterError, startCluster, type Cluster } from './helpers/pg-cluster.js'

const WAIT_MS = 20_000

/** One query on a connection of its own (the replica goes down mid-test). */
async function q<T extends postgres.Row> (url: string, text: string, params: string[] = []): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    return [...await sql.unsafe<T[]>(text, params)]
  } finally {
    await sql.end({ timeout: 1 })
  }
}

async function eventually (what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const count = async (url: string): Promise<number> => (await q<{ n: number }>(url, 'select count(*)::int as n from items'))[0].n

function refuses (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(false) })
    socket.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code === 'ECONNREFUSED') })
  })
}

function suite (cluster: Cluster): void {
  t.teardown(() => cluster.stop())
  const replicaUrl = cluster.replicaUrl!

  t.test('a row on the primary reaches the replica', async (t) => {
    await q(cluster.url, 'create table items (n int)')
    await q(cluster.url, 'insert into items values (1)')
    await eventually('the replica has the row', async () => await count(replicaUrl).catch(() => 0) === 1)
    t.equal(await count(replicaUrl), 1)
    t.match((await q(replicaUrl, 'select pg_is_in_recovery() as r'))[0], { r: true }, 'the replica is a standby')
  })

  t.test('paused replay holds a row back until resumed', async (t) => {
    await cluster.pauseReplay()
    await q(cluster.url, 'insert into items values (2)')
    const [{ lsn }] = await q<{ lsn: string }>(cluster.url, 'select pg_current_wal_lsn()::text as lsn')
    // Received but not applied: the replica has the WAL of the insert, and still one row.
    await eventually('the replica receives the insert', async () =>
      (await q<{ ok: boolean }>(replicaUrl, 'select pg_last_wal_receive_lsn() >= $1::pg_lsn as ok', [lsn]))[0].ok)
    t.equal(await count(replicaUrl), 1, 'the replica does not have the new row')
    t.ok(await cluster.replicationLagBytes() > 0, 'lag > 0')

    await cluster.resumeReplay()
    await eventually('the replica has the new row', async () => await count(replicaUrl) === 2)
    t.pass('the row arrived after resume')
  })

  t.test('the replica stops and starts again', async (t) => {
    await cluster.stopReplica()
    t.ok(await refuses(cluster.replicaPort!), 'the replica port refuses connections')
    await cluster.startReplica()
    t.equal(await count(replicaUrl), 2, 'back, with its data')
  })

  t.test('stop() removes everything, and may be called again', async (t) => {
    await cluster.stop()
    t.notOk(existsSync(cluster.dir), 'temp dir gone')
    t.notOk(existsSync(cluster.dataDir), 'primary data dir gone')
    t.notOk(existsSync(cluster.replicaDataDir!), 'replica data dir gone')
    t.ok(await refuses(cluster.port), 'the primary port refuses connections')
    await cluster.stop()
  })
}

try {
  suite(await startCluster({ replica: true }))
} catch (err) {
  // Like requirePostgres(): without the binaries the test is skipped, except in CI where it fails.
  if (!(err instanceof PgClusterError && err.code === 'ENOPGBIN') || process.env.CI === 'true') throw err
  t.plan(0, `skipped: ${err.message}`)
}
