import t from 'tap'

// on-disk PGlite (initdb) is slow on a loaded machine
t.setTimeout(300_000)
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import { createDatabase, ping } from '../lib/store/database.js'
import { EmbeddedDatabaseBusyError } from '../lib/store/errors.js'
import { migrate, MIGRATIONS_FOLDER } from '../lib/store/migrate.js'
import { validateChannel } from '../lib/store/notify.js'
import { databaseUrl, freshDatabase, query, requirePostgres } from './helpers/db.js'
import { childEnv } from './helpers/child-env.js'

async function exitedPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => child.once('exit', resolve))
  return child.pid!
}

const waitFor = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!cond() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

t.test('MIGRATIONS_FOLDER points at the committed drizzle/ folder', async (t) => {
  t.ok(existsSync(path.join(MIGRATIONS_FOLDER, 'meta', '_journal.json')))
})

t.test('embedded PGlite: a lock file keeps a second opener out', async (t) => {
  const dataDir = path.join(t.testdir({}), '.data')
  const lock = path.join(dataDir, 'LOCK')

  // A live process holds the lock: refused at once, before PGlite starts.
  const holder = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => { holder.kill('SIGKILL') })
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(lock, `${holder.pid}\n`)
  await t.rejects(createDatabase(undefined, { dataDir }), {
    name: 'EmbeddedDatabaseBusyError', pid: holder.pid, message: /embedded database at .* is busy.*pid \d+.*DATABASE_URL/
  })
  t.equal(readFileSync(lock, 'utf8'), `${holder.pid}\n`, "the holder's lock is left alone")

  // A lock left by a dead process (crash, kill -9) is taken over.
  const dead = await exitedPid()
  writeFileSync(lock, `${dead}\n`)
  const first = await createDatabase(undefined, { dataDir })
  t.equal(first.kind, 'pglite')
  t.equal(first.dataDir, dataDir)
  t.equal(readFileSync(lock, 'utf8'), `${process.pid}\n`, 'the lock now holds our pid')
  await migrate(first)
  await query(first, "insert into token_auth_users (username, password_hash) values ('persisted', 'x')")

  // Same process, same directory: also refused (two PGlite instances on one directory lose writes).
  const err = await createDatabase(undefined, { dataDir }).catch((e: unknown) => e)
  t.type(err, EmbeddedDatabaseBusyError)
  t.equal((err as EmbeddedDatabaseBusyError).pid, process.pid)
  t.equal((err as EmbeddedDatabaseBusyError).dataDir, dataDir)

  await first.close()
  await first.close()
  t.notOk(existsSync(lock), 'close() releases the lock (and is idempotent)')

  const again = await createDatabase(undefined, { dataDir })
  t.same(await query(again, 'select username from token_auth_users'), [{ username: 'persisted' }], 'data persisted on disk')
  rmSync(lock)
  await again.close()
  t.notOk(existsSync(lock), 'a lock removed meanwhile: close() does not mind')

  // A lock file that is not ours is not removed by our close.
  const third = await createDatabase(undefined, { dataDir })
  writeFileSync(lock, 'someone else\n')
  await third.close()
  t.equal(readFileSync(lock, 'utf8'), 'someone else\n')
})

t.test('lock: a holder this user may not signal counts as alive; a failed open releases the lock', async (t) => {
  const base = t.testdir({})
  const dataDir = path.join(base, 'a')
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(path.join(dataDir, 'LOCK'), '4242\n')
  const kill = process.kill
  process.kill = ((pid: number, signal?: string | number) => {
    if (pid === 4242) throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' })
    return kill.call(process, pid, signal)
  }) as typeof process.kill
  try {
    await t.rejects(createDatabase(undefined, { dataDir }), { name: 'EmbeddedDatabaseBusyError', pid: 4242 })
  } finally {
    process.kill = kill
  }
  t.match(new EmbeddedDatabaseBusyError('/x', undefined).message, /^the embedded database at \/x is busy: it is open in another process\. /)

  const { createDatabase: create } = await t.mockImport<typeof import('../lib/store/database.js')>('../lib/store/database.js', {
    '@electric-sql/pglite': { ...await import('@electric-sql/pglite'), PGlite: { create: async () => { throw new Error('cannot start') } } }
  })
  const other = path.join(base, 'b')
  mkdirSync(other)
  writeFileSync(path.join(other, 'LOCK'), 'garbage')
  await t.rejects(create(undefined, { dataDir: other }), /cannot start/, 'an unreadable lock is taken over')
  t.notOk(existsSync(path.join(other, 'LOCK')), 'lock released when PGlite fails to start')

  // the default directory is ./.data
  t.chdir(base)
  const holder = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => { holder.kill('SIGKILL') })
  mkdirSync(path.join(base, '.data'))
  writeFileSync(path.join(base, '.data', 'LOCK'), `${holder.pid}`)
  await t.rejects(createDatabase(), { name: 'EmbeddedDatabaseBusyError', dataDir: path.join(base, '.data') })
})

t.test('listen/unlisten on the database kind in use', async (t) => {
  const { database } = await freshDatabase(t)
  await ping(database.db)
  t.pass('ping')
  const got: string[] = []
  const unlisten = await database.listen('some_channel', (p) => got.push(p))
  await query(database, "select pg_notify('some_channel', 'hello')")
  await waitFor(() => got.length > 0)
  t.same(got, ['hello'])
  await unlisten()
  await query(database, "select pg_notify('some_channel', 'again')")
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(got, ['hello'], 'nothing after unlisten')
  await t.rejects(database.listen('Bad-Channel', () => {}), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'channel', message: /option channel must be a NOTIFY channel/ })
})

t.test('postgres.js: listen on one database, notify from another client', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database } = await freshDatabase(t)
  const other = await createDatabase(url)
  await query(other, 'drop table if exists nothing_here') // a NOTICE, silenced
  t.teardown(() => other.close())
  t.equal(other.kind, 'postgres')
  t.equal(other.url, url)
  const got: string[] = []
  const unlisten = await database.listen('cross_conn', (p) => got.push(p))
  await query(other, "select pg_notify('cross_conn', 'x')")
  await waitFor(() => got.length > 0)
  t.same(got, ['x'])
  await unlisten()
  await other.close()
  await other.close()
  t.ok(databaseUrl())
})

t.test('postgres.js: idleTimeout closes idle pool connections, LISTEN stays', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database } = await freshDatabase(t)
  const name = new URL(url as string).pathname.slice(1)
  const idle = await createDatabase(url as string, { max: 3, idleTimeout: 200 })
  t.teardown(() => idle.close())
  const unlisten = await idle.listen('idle_check', () => {})
  const count = async (): Promise<number> => (await query<{ n: number }>(database, 'select count(*)::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]))[0].n
  const before = await count()
  await Promise.all([1, 2, 3].map(async () => await query(idle, 'select pg_sleep(0.05)')))
  t.equal(await count(), before + 3, 'the pool opened three connections')
  await waitFor(() => false, 600)
  t.equal(await count(), before, 'and closed them once idle; the LISTEN connection is still there')
  await unlisten()
  await t.rejects(createDatabase(url, { idleTimeout: -1 }), /idleTimeout/)
})

t.test('in-memory PGlite and channel names', async (t) => {
  const mem = await createDatabase(undefined, { memory: true })
  t.equal(mem.kind, 'pglite')
  t.equal(mem.dataDir, undefined)
  const early = await mem.listen('c', () => {})
  await early()
  const unlisten = await mem.listen('c', () => {})
  await mem.close()
  await unlisten()
  t.pass('unlisten after close does not throw')
  t.equal(validateChannel('token_auth_revoked'), 'token_auth_revoked')
  for (const bad of ['', 'A', '1a', 'a-b', 'a'.repeat(64), 'a b']) t.throws(() => validateChannel(bad), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'channel' }, JSON.stringify(bad))
})

t.test('the embedded database\'s directory is private: 0700, its files unreadable by others, repaired at open', async (t) => {
  const dataDir = path.join(t.testdir({}), 'fresh')
  const first = await createDatabase(undefined, { dataDir })
  await migrate(first)
  await first.close()
  t.equal(statSync(dataDir).mode & 0o777, 0o700, 'created 0700')
  // Loosened by hand (a copy, a umask of 000...): repaired on the next open.
  chmodSync(dataDir, 0o755)
  const stray = path.join(dataDir, 'base')
  chmodSync(stray, 0o777)
  const file = readdirSync(path.join(dataDir, 'global')).map((f) => path.join(dataDir, 'global', f)).find((f) => statSync(f).isFile())!
  chmodSync(file, 0o666)
  const again = await createDatabase(undefined, { dataDir })
  try {
    t.equal(statSync(dataDir).mode & 0o777, 0o700, 'the directory is 0700 again')
    t.equal(statSync(stray).mode & 0o077, 0, 'a subdirectory lost its group and other bits')
    t.equal(statSync(file).mode & 0o077, 0, 'so did a file')
  } finally {
    await again.close()
  }
  const loose = (readdirSync(dataDir, { recursive: true }) as string[]).filter((f) => (lstatSync(path.join(dataDir, f)).mode & 0o077) !== 0 && !lstatSync(path.join(dataDir, f)).isSymbolicLink())
  t.same(loose, [], 'after close, nothing in it is readable by group or others (the files PGlite made meanwhile included)')
})

t.test('taking over a stale lock is atomic: of six processes at once, one opens the directory', async (t) => {
  const dataDir = path.join(t.testdir({}), 'contended')
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(path.join(dataDir, 'LOCK'), `${await exitedPid()}\n`) // left by a dead process
  const lib = new URL('../lib/store/database.ts', import.meta.url).href
  const script = `const { createDatabase } = await import(${JSON.stringify(lib)})
    try { const db = await createDatabase(undefined, { dataDir: ${JSON.stringify(dataDir)} }); process.stdout.write('opened'); await new Promise((r) => setTimeout(r, 3000)); await db.close() }
    catch (err) { process.stdout.write(err.name) }`
  const tsx = (await import('node:module')).createRequire(import.meta.url).resolve('tsx')
  const results = await Promise.all(Array.from({ length: 6 }, () => new Promise<string>((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], { env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.on('close', () => resolve(out))
  })))
  t.equal(results.filter((r) => r === 'opened').length, 1, `one opened it: ${results.join(', ')}`)
  t.equal(results.filter((r) => r === 'EmbeddedDatabaseBusyError').length, 5, 'the others were told it is busy')
})
