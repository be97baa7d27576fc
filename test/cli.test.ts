// The `fastify-token-auth` CLI: usage errors, then the whole story against a fresh PostgreSQL database,
// each command run in process through main() (as the bin runs it); the bin itself, as a process, at the
// end. The embedded database: test/cli-embedded.test.ts.
import { existsSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { applySchema, insertUser, uuidSchema } from './helpers/app-schema.js'
import { freshDatabase, query, requirePostgres } from './helpers/db.js'
import { cli, cliInProcess, scenario, tempDir, TOKEN_RE, type Result, type Target } from './helpers/cli.js'

t.test('usage errors and help (no database is opened)', async (t) => {
  const cwd = tempDir(t)
  const run = (args: string[], input?: string): Promise<Result> => cliInProcess(args, { cwd, env: {}, input })
  let r = await run(['--help'])
  t.equal(r.code, 0)
  t.match(r.stdout, /^Usage: fastify-token-auth <command> \[options\]/)
  for (const cmd of ['migrate', 'user create <username>', 'user deactivate <username>', 'token create <user>', 'token list <user>', 'token revoke <id>', 'token revoke-all <user>', 'token prune', 'events']) {
    t.ok(r.stdout.includes(cmd), `help lists ${cmd}`)
  }
  r = await run(['--version'])
  t.equal(r.code, 0)
  t.match(r.stdout, /^\d+\.\d+\.\d+/)

  const cases: Array<[string[], RegExp]> = [
    [[], /no command given/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['user'], /"user" needs a subcommand/],
    [['user', 'rename', 'a'], /unknown command "user rename"/],
    [['token', 'create'], /token create: missing <user>/],
    [['token', 'create', 'abc', '--id'], /with --id, <user> is the user's id \(a whole number here\), got "abc"/],
    [['token', 'list', 'bob', '--prefix', 'x'], /token list does not take --prefix/],
    [['user', 'create', 'bob', 'hunter2'], /user create: unexpected argument "hunter2"/],
    [['user', 'create', 'bob', '--password', 'hunter2'], /Unknown option '--password'/],
    [['token', 'create', 'bob', '--json'], /token create does not take --json/],
    [['token', 'create', 'bob', '--expires-in', '1h'], /--expires-in must be a whole number of seconds/],
    [['token', 'create', 'bob', '--expires-in', '0'], /--expires-in must be a whole number of seconds/],
    [['token', 'create', 'bob', '--scopes', ','], /--scopes needs at least one scope/],
    [['token', 'create', 'bob', '--name'], /argument missing/],
    [['token', 'revoke', 'abc'], /a token id is a positive whole number/],
    [['token', 'revoke-all', 'bob', '--except', 'x'], /a token id is a positive whole number/],
    [['events', '--limit', '0'], /--limit must be a whole number from 1 to 10000/],
    [['events', 'bob'], /events: unexpected argument "bob"/],
    [['events', '--user', ' bob'], /username must not start or end with whitespace/],
    [['token', 'list', 'bob', '--keep-tokens'], /token list does not take --keep-tokens/],
    [['token', 'list', ' bob'], /username must not start or end with whitespace/]
  ]
  for (const [args, message] of cases) {
    r = await run(args)
    t.equal(r.code, 2, `${JSON.stringify(args)}: exit 2`)
    t.match(r.stderr, message)
    t.match(r.stderr, /^fastify-token-auth: /)
    t.equal(r.stdout, '')
  }
  t.notOk(existsSync(path.join(cwd, '.data')), 'no embedded database was created by a usage error')
  r = await run(['token', 'list', 'bob'])
  t.match(r.stderr, /does not exist/, 'sanity: a valid command does open the database')
  r = await cliInProcess(['token', 'list', 'bob', '--data-dir', cwd], { cwd, env: { DATABASE_URL: 'postgres://127.0.0.1:1/x' } })
  t.equal(r.code, 2, '--data-dir with DATABASE_URL is a usage error')
})

t.test('on PostgreSQL (DATABASE_URL)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database, service } = await freshDatabase(t, { migrate: false })
  const cwd = tempDir(t)
  const target: Target = {
    run: (args, input) => cliInProcess(args, { cwd, env: { DATABASE_URL: url }, input }),
    withDatabase: async (fn) => await fn(database)
  }
  let r = await target.run(['token', 'list', 'alice'])
  t.equal(r.code, 1, 'before migrate: exit 1')
  t.match(r.stderr, /the tables do not exist yet: run `fastify-token-auth migrate` first/, 'and says what to do')
  await scenario(t, target)

  r = await target.run(['migrate'])
  t.equal(r.code, 0, 'migrate again: nothing to do, still 0')
  for (const args of [['token', 'list', 'nobody'], ['user', 'deactivate', 'nobody'], ['user', 'password', 'nobody']]) {
    r = await target.run(args)
    t.equal(r.code, 1, `${args.join(' ')}: unknown user, exit 1`)
    t.match(r.stderr, /user "nobody" does not exist/)
    t.equal(r.stdout, '')
  }
  r = await target.run(['user', 'create', 'bob'])
  t.equal(r.code, 1, 'no password on stdin: exit 1')
  t.match(r.stderr, /expected the password on the first line of stdin/)
  r = await target.run(['user', 'create', 'bob'], '\n')
  t.equal(r.code, 1, 'an empty password: exit 1')
  t.match(r.stderr, /password must be 1 to 1024 characters/)
  r = await target.run(['user', 'create', 'bob'], 'first line\r\nsecond line\n')
  t.equal(r.code, 0, 'CRLF input')
  t.ok(await service.verifyCredentials('bob', 'first line'), 'only the first line, without CR LF, is the password')
  t.notOk(existsSync(path.join(cwd, '.data')), 'no embedded database was created')

  const down = await cliInProcess(['token', 'list', 'alice'], { cwd, env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing' } })
  t.equal(down.code, 1, 'a server that does not answer: exit 1')
  t.match(down.stderr, /ECONNREFUSED/)
})

t.test('the config module: the CLI hashes and issues as the app does', async (t) => {
  if (!requirePostgres(t)) return
  const { url, service } = await freshDatabase(t)
  const cwd = tempDir(t)
  writeFileSync(path.join(cwd, 'token-auth.config.mjs'), "export default { service: { prefix: 'acme', passwordParams: { ln: 11 } } }\n")
  const env = { DATABASE_URL: url }
  let r = await cliInProcess(['--config', 'token-auth.config.mjs', 'user', 'create', 'erin'], { cwd, env, input: 'pw\n' })
  t.equal(r.code, 0, r.stderr)
  const [{ passwordHash }] = await service.db.query.users.findMany({ where: (u, { eq }) => eq(u.username, 'erin') })
  t.match(passwordHash, /^scrypt\$ln=11,r=8,p=1\$/, 'hashed with the config\'s cost, not the defaults')
  r = await cliInProcess(['token', 'create', 'erin'], { cwd, env: { ...env, TOKEN_AUTH_CONFIG: 'token-auth.config.mjs' } })
  t.match(r.stdout, /^acme_[0-9A-Za-z]{36}\n$/, 'TOKEN_AUTH_CONFIG: the config\'s prefix')
  writeFileSync(path.join(cwd, 'bad.config.mjs'), "export default { service: { prefix: 'Bad-One' } }\n")
  r = await cliInProcess(['--config', 'bad.config.mjs', 'token', 'list', 'erin'], { cwd, env })
  t.equal(r.code, 2, 'a bad option in the config: exit 2')
  t.match(r.stderr, /^fastify-token-auth: config: option service\.prefix must be a token prefix/)
  r = await cliInProcess(['--config', 'missing.mjs', 'token', 'list', 'erin'], { cwd, env })
  t.equal(r.code, 1)
  t.match(r.stderr, /^fastify-token-auth: cannot load the config "missing\.mjs"/)
})

t.test('events: the audit trail the server and the CLI wrote, newest first, of one user, as JSON', async (t) => {
  if (!requirePostgres(t)) return
  const { url } = await freshDatabase(t)
  const cwd = tempDir(t)
  writeFileSync(path.join(cwd, 'audit.config.mjs'), 'export default { service: { events: { table: true }, passwordParams: { ln: 10 } } }\n')
  const env = { DATABASE_URL: url, TOKEN_AUTH_CONFIG: 'audit.config.mjs' }
  const run = (args: string[], input?: string): Promise<Result> => cliInProcess(args, { cwd, env, input })
  let r = await run(['events'])
  t.equal(r.stdout, '(no events: the server writes them with service.events.table)\n')
  await run(['user', 'create', 'dave'], 'pw\n')
  await run(['user', 'create', 'erin'], 'pw\n')
  const token = (await run(['token', 'create', 'dave', '--name', 'ci'])).stdout.trim()
  await run(['token', 'revoke-all', 'dave'])
  r = await run(['events'])
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.match(lines[0], /^AT\s+EVENT\s+USER\s+TOKEN\s+ADDRESS\s+DETAIL$/)
  t.same(lines.slice(1).map((l) => l.split(/\s{2,}/)[1]), ['token.revoked', 'token.issued', 'user.created', 'user.created'])
  r = await run(['events', '--user', 'erin', '--json'])
  const erin = JSON.parse(r.stdout) as Array<Record<string, unknown>>
  t.match(erin, [{ type: 'user.created', detail: { username: 'erin' } }])
  t.equal(erin.length, 1, 'only erin\'s')
  r = await run(['events', '--limit', '1', '--json'])
  t.match(JSON.parse(r.stdout), [{ type: 'token.revoked' }])
  t.notOk(r.stdout.includes(token.slice(8)), 'no token in the trail')
  r = await run(['events', '--user', 'nobody'])
  t.equal(r.code, 1)
})

t.test('the bin, as a process of its own', async (t) => {
  const cwd = tempDir(t)
  let r = await cli(['--help'], { cwd, env: {} })
  t.equal(r.code, 0, '--help exits 0')
  t.match(r.stdout, /^Usage: fastify-token-auth <command> \[options\]/)
  r = await cli(['frobnicate'], { cwd, env: {} })
  t.equal(r.code, 2, 'a usage error exits 2')
  t.match(r.stderr, /^fastify-token-auth: unknown command "frobnicate"\nRun `fastify-token-auth --help` for usage\.\n$/)
})

t.test('the bin, as a process of its own, on PostgreSQL', async (t) => {
  if (!requirePostgres(t)) return
  const cwd = tempDir(t)
  const { url } = await freshDatabase(t, { migrate: false })
  const env = { DATABASE_URL: url }
  let r = await cli(['migrate'], { cwd, env })
  t.equal(r.code, 0, r.stderr)
  r = await cli(['user', 'create', 'frank'], { cwd, env, input: 'a password\n' })
  t.equal(r.code, 0, 'the password is read from piped stdin')
  r = await cli(['token', 'create', 'frank', '--name', 'ci'], { cwd, env })
  t.equal(r.code, 0)
  t.match(r.stdout, /^tat_[0-9A-Za-z]{36}\n$/)
  t.match(r.stdout.trim(), TOKEN_RE)
  t.equal(r.stderr, '')
})

t.test('the app\'s own users through the config module; --prefix and TOKEN_AUTH_PREFIX', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database } = await freshDatabase(t, { migrate: false })
  const schema = uuidSchema()
  await applySchema(database, schema)
  const id = await insertUser(database, schema, 'ada@example.com', 'pw')
  const cwd = t.testdir({}) // inside the project, so that the config module finds drizzle-orm
  const lib = (file: string): string => JSON.stringify(new URL(`../lib/${file}`, import.meta.url).href)
  writeFileSync(path.join(cwd, 'token-auth.config.mjs'), `
    import { isNull } from 'drizzle-orm'
    import { pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'
    import { appUsers } from ${lib('users/app-users.ts')}
    import { tokenAuthTables } from ${lib('store/schema.ts')}
    const users = pgTable('users', { id: uuid('id').primaryKey().defaultRandom(), email: text('email').notNull().unique(),
      passwordHash: text('password_hash').notNull(), disabledAt: timestamp('disabled_at', { withTimezone: true }) })
    const { tokens } = tokenAuthTables(users.id)
    export default { service: { prefix: 'acme', users: appUsers({ table: users, tokens, login: users.email, passwordHash: users.passwordHash,
      verifyPassword: async () => false, active: isNull(users.disabledAt) }) } }
  `)
  const env = { DATABASE_URL: url, TOKEN_AUTH_CONFIG: 'token-auth.config.mjs' }
  let r = await cliInProcess(['token', 'create', 'ada@example.com', '--name', 'ci'], { cwd, env })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^acme_[0-9A-Za-z]{36}\n$/, 'a token for the app\'s user, with the config\'s prefix')
  const rows = await query<{ user_id: string, name: string }>(database, 'select user_id, name from token_auth_tokens')
  t.same(rows, [{ user_id: id, name: 'ci' }])
  r = await cliInProcess(['token', 'create', String(id), '--id', '--prefix', 'next'], { cwd, env })
  t.match(r.stdout, /^next_[0-9A-Za-z]{36}\n$/, '--id: by the user\'s id; --prefix wins over the config')
  r = await cliInProcess(['token', 'create', 'ada@example.com'], { cwd, env: { ...env, TOKEN_AUTH_PREFIX: 'envp' } })
  t.match(r.stdout, /^envp_[0-9A-Za-z]{36}\n$/, 'TOKEN_AUTH_PREFIX')
  r = await cliInProcess(['token', 'create', 'ada@example.com', '--prefix', 'Bad-Prefix'], { cwd, env })
  t.equal(r.code, 2)
  t.match(r.stderr, /--prefix \(or TOKEN_AUTH_PREFIX\) must be a token prefix, .*got "Bad-Prefix"/)
  r = await cliInProcess(['token', 'list', 'ada@example.com', '--json'], { cwd, env })
  t.same(JSON.parse(r.stdout).map((tok: { hint: string }) => tok.hint.split('_')[0]), ['acme', 'next', 'envp'])
  r = await cliInProcess(['user', 'create', 'bob@example.com'], { cwd, env, input: 'pw\n' })
  t.equal(r.code, 1)
  t.match(r.stderr, /createUser: the users are the app's own/)
  r = await cliInProcess(['token', 'create', 'nobody@example.com'], { cwd, env })
  t.equal(r.code, 1)
  t.match(r.stderr, /user "nobody@example\.com" does not exist/)
})

t.test('token list escapes the characters a terminal would hide or reorder (a name stored before they were refused)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database, service } = await freshDatabase(t)
  const { id } = await service.createUser('mallory', 'pw')
  await service.issueToken(id, { name: 'x' })
  await query(database, "update token_auth_tokens set name = 'invoice\u202Efdp.exe'")
  const cwd = tempDir(t)
  let r = await cliInProcess(['token', 'list', 'mallory'], { cwd, env: { DATABASE_URL: url } })
  t.notOk(r.stdout.includes('\u202E'), 'no raw U+202E in the table')
  t.match(r.stdout, /invoice\\u\{202e\}fdp\.exe/, 'written as an escape')
  r = await cliInProcess(['token', 'list', 'mallory', '--json'], { cwd, env: { DATABASE_URL: url } })
  t.notOk(r.stdout.includes('\u202E'), 'nor in the JSON')
  t.equal(JSON.parse(r.stdout)[0].name, 'invoice\u202Efdp.exe', 'which is still the same name, as JSON')
})
