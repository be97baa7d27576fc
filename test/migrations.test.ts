import t from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import postgres from 'postgres'
import { drizzle } from 'drizzle-orm/postgres-js'
import { getTableConfig } from 'drizzle-orm/pg-core'
import { tokens, users } from '../lib/store/schema.js'
import type { Database } from '../lib/store/database.js'
import { migrate, MIGRATIONS_FOLDER, MIGRATIONS_TABLE } from '../lib/store/migrate.js'
import { freshDatabase, query, requirePostgres } from './helpers/db.js'

const run = promisify(execFile)
/** How many migrations drizzle/ holds (one journal row each once applied). */
const MIGRATIONS = readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith('.sql')).length
const root = fileURLToPath(new URL('..', import.meta.url))
const drizzleKit = path.join(root, 'node_modules', '.bin', 'drizzle-kit')

/** Everything migrations can change, as comparable text. */
async function describeSchema (database: Database): Promise<unknown> {
  const columns = await query(database, `select table_schema, table_name, column_name, data_type, is_nullable, column_default, is_identity
    from information_schema.columns where table_schema in ('public', 'drizzle') order by 1, 2, 3`)
  const indexes = await query(database, `select schemaname, tablename, indexname, indexdef from pg_indexes
    where schemaname in ('public', 'drizzle') order by 1, 2, 3`)
  const constraints = await query(database, `select conrelid::regclass::text as rel, conname, pg_get_constraintdef(oid) as def
    from pg_constraint where connamespace in ('public'::regnamespace) order by 1, 2`)
  const journal = await query(database, `select hash, created_at::text as created_at from drizzle.${MIGRATIONS_TABLE} order by id`)
  return { columns, indexes, constraints, journal }
}

t.test('migrations apply to an empty database; a second run changes nothing', async (t) => {
  const { database } = await freshDatabase(t, { migrate: false })
  const tables = async (): Promise<string[]> => (await query<{ table_name: string }>(database,
    "select table_name from information_schema.tables where table_schema = 'public' order by 1")).map((r) => r.table_name)
  t.same(await tables(), [], 'empty at first')
  await migrate(database)
  t.same(await tables(), ['token_auth_events', 'token_auth_throttle', 'token_auth_tokens', 'token_auth_users'])
  const first = await describeSchema(database)
  t.equal((first as { journal: unknown[] }).journal.length, readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith('.sql')).length,
    'one journal row per migration file')
  await migrate(database)
  t.same(await describeSchema(database), first, 'second run: same schema, same journal')

  const idx = await query<{ indexdef: string }>(database, "select indexdef from pg_indexes where tablename = 'token_auth_tokens'")
  t.ok(idx.some((r) => /UNIQUE INDEX token_auth_tokens_token_hash_unique .*\(token_hash\)/.test(r.indexdef)), 'unique index on token_hash')
  t.ok(idx.some((r) => /INDEX token_auth_tokens_user_id_idx .*\(user_id\)/.test(r.indexdef)), 'index on user_id')
  const fk = await query<{ def: string }>(database, "select pg_get_constraintdef(oid) as def from pg_constraint where contype = 'f' and conrelid = 'token_auth_tokens'::regclass")
  t.match(fk[0].def, /REFERENCES token_auth_users\(id\) ON DELETE CASCADE/)
})

t.test('migrate() on a drizzle database the app built (no URL: no advisory lock)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database } = await freshDatabase(t, { migrate: false })
  const client = postgres(url!, { max: 1, onnotice: () => {} })
  t.teardown(() => client.end({ timeout: 5 }))
  await migrate({ db: drizzle(client), kind: 'postgres' })
  t.equal((await query(database, `select count(*)::int as n from drizzle.${MIGRATIONS_TABLE}`))[0].n, MIGRATIONS)
})

t.test('the schema objects: foreign key with cascade, indexes', async (t) => {
  const config = getTableConfig(tokens)
  t.equal(config.name, 'token_auth_tokens')
  t.equal(config.foreignKeys[0].onDelete, 'cascade')
  t.equal(getTableConfig(config.foreignKeys[0].reference().foreignTable).name, getTableConfig(users).name)
  t.same(config.indexes.map((i) => i.config.name), ['token_auth_tokens_user_id_idx'])
})

t.test('concurrent migrate() calls (several processes starting at once) are serialized', async (t) => {
  if (!requirePostgres(t)) return
  const { database } = await freshDatabase(t, { migrate: false })
  await Promise.all([migrate(database), migrate(database), migrate(database)])
  t.equal((await query(database, `select count(*)::int as n from drizzle.${MIGRATIONS_TABLE}`))[0].n, MIGRATIONS, 'each migration applied once')
})

t.test('coexists with a host app that has its own users table and its own Drizzle journal', async (t) => {
  const { database, service } = await freshDatabase(t, {
    before: async (_sql, db) => {
      await query(db, 'create table users (id serial primary key, email text not null unique)')
      await query(db, "insert into users (email) values ('host@example.com')")
      // the host app's own drizzle-kit journal, in drizzle's default table
      await query(db, 'create schema drizzle')
      await query(db, 'create table drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)')
      await query(db, "insert into drizzle.__drizzle_migrations (hash, created_at) values ('host', 9999999999999)")
    }
  })
  const { id } = await service.createUser('alice', 'pw')
  const { token } = await service.issueToken(id)
  t.ok(token)
  t.same(await query(database, 'select id, email from users'), [{ id: 1, email: 'host@example.com' }], "the host's users table is untouched")
  t.same((await query<{ column_name: string }>(database,
    "select column_name from information_schema.columns where table_name = 'users' order by ordinal_position")).map((r) => r.column_name),
  ['id', 'email'])
  t.same(await query(database, 'select hash from drizzle.__drizzle_migrations'), [{ hash: 'host' }], "the host's journal is untouched")
  t.equal((await query(database, 'select count(*)::int as n from token_auth_users'))[0].n, 1)
  t.equal((await query(database, "select count(*)::int as n from token_auth_tokens t join token_auth_users u on u.id = t.user_id where u.username = 'alice'"))[0].n, 1)
})

t.test('drizzle-kit finds no difference between the schema and drizzle/', async (t) => {
  const dir = t.testdir({})
  const out = path.join(dir, 'drizzle')
  cpSync(path.join(root, 'drizzle'), out, { recursive: true })
  const config = path.join(dir, 'drizzle.config.json')
  writeFileSync(config, JSON.stringify({
    // drizzle-kit wants paths relative to its working directory
    dialect: 'postgresql', schema: path.relative(dir, path.join(root, 'lib', 'store', 'schema.ts')), out: './drizzle'
  }))
  const before = readdirSync(out).sort()
  const gen = await run(drizzleKit, ['generate', '--config', config], { cwd: dir })
  t.match(gen.stdout + gen.stderr, /No schema changes/, 'generate: no schema changes')
  t.same(readdirSync(out).sort(), before, 'no new migration file')
  const check = await run(drizzleKit, ['check', '--config', config], { cwd: dir })
  t.match(check.stdout + check.stderr, /Everything's fine/, 'check: the migration history is consistent')

  // control: the same command does see a change (a column added to a copy of the schema)
  const changed = path.join(dir, 'schema-changed.ts')
  writeFileSync(changed, readFileSync(path.join(root, 'lib', 'store', 'schema.ts'), 'utf8')
    .replace("name: text('name').notNull().default(''),", "name: text('name').notNull().default(''),\n  extra: text('extra'),"))
  writeFileSync(config, JSON.stringify({ dialect: 'postgresql', schema: './schema-changed.ts', out: './drizzle' }))
  const gen2 = await run(drizzleKit, ['generate', '--config', config], { cwd: dir })
  t.notMatch(gen2.stdout + gen2.stderr, /No schema changes/, 'control: a changed schema is detected')
  t.equal(readdirSync(out).filter((f) => f.endsWith('.sql')).length, before.filter((f) => f.endsWith('.sql')).length + 1)
})

t.test('npx drizzle-kit migrate with drizzle.config.ts, then migrate() changes nothing', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database } = await freshDatabase(t, { migrate: false })
  const res = await run(drizzleKit, ['migrate'], { cwd: root, env: { ...process.env, DATABASE_URL: url } })
  t.match(res.stdout + res.stderr, /migrations applied successfully/i)
  const first = await describeSchema(database)
  t.equal((first as { journal: unknown[] }).journal.length, MIGRATIONS, 'recorded in drizzle.__token_auth_migrations')
  await migrate(database)
  t.same(await describeSchema(database), first, 'the programmatic migrate shares the journal')
})

t.test('an upgrade from the 0.1.0 schema keeps every row (the visible prefix column becomes `hint`)', async (t) => {
  const { database } = await freshDatabase(t, { migrate: false })
  // drizzle/ as 0.1.0 shipped it: the first migration only.
  const old = t.testdir({})
  cpSync(MIGRATIONS_FOLDER, old, { recursive: true })
  const journalPath = path.join(old, 'meta', '_journal.json')
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: Array<{ tag: string }> }
  journal.entries = journal.entries.slice(0, 1)
  writeFileSync(journalPath, JSON.stringify(journal))
  const config = { migrationsFolder: old, migrationsSchema: 'drizzle', migrationsTable: MIGRATIONS_TABLE }
  if (database.kind === 'pglite') await (await import('drizzle-orm/pglite/migrator')).migrate(database.db as never, config)
  else await (await import('drizzle-orm/postgres-js/migrator')).migrate(database.db as never, config)
  await query(database, "insert into token_auth_users (username, password_hash) values ('old', 'x')")
  await query(database, "insert into token_auth_tokens (user_id, token_hash, prefix, name) select id, 'h1', 'tat_AbC1', 'laptop' from token_auth_users")
  await migrate(database)
  t.same(await query(database, 'select u.username, t.token_hash, t.hint, t.name from token_auth_tokens t join token_auth_users u on u.id = t.user_id'),
    [{ username: 'old', token_hash: 'h1', hint: 'tat_AbC1', name: 'laptop' }], 'the rows are kept, the visible part now under hint')
  t.equal((await query(database, `select count(*)::int as n from drizzle.${MIGRATIONS_TABLE}`))[0].n, MIGRATIONS)
})
