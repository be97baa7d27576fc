// The `fastify-token-auth` bin end to end (each command in its own process): usage errors, then the
// whole story against a fresh PostgreSQL database. The embedded database: test/cli-embedded.test.ts.
import { existsSync } from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { freshDatabase, requirePostgres } from './helpers/db.js'
import { cli, scenario, tempDir, type Result, type Target } from './helpers/cli.js'

// Every command is its own process (1 to 2 s each, several times that on a loaded machine): more than .taprc's 120 s.
t.setTimeout(600_000)

t.test('usage errors and help (no database is opened)', async (t) => {
  const cwd = tempDir(t)
  const run = (args: string[], input?: string): Promise<Result> => cli(args, { cwd, env: {}, input })
  let r = await run(['--help'])
  t.equal(r.code, 0)
  t.match(r.stdout, /^Usage: fastify-token-auth <command> \[options\]/)
  for (const cmd of ['migrate', 'user create <username>', 'user deactivate <username>', 'token create <username>', 'token list <username>', 'token revoke <id>', 'token prune']) {
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
    [['token', 'create'], /token create: missing <username>/],
    [['user', 'create', 'bob', 'hunter2'], /user create: unexpected argument "hunter2"/],
    [['user', 'create', 'bob', '--password', 'hunter2'], /Unknown option '--password'/],
    [['token', 'create', 'bob', '--json'], /token create does not take --json/],
    [['token', 'create', 'bob', '--expires-in', '1h'], /--expires-in must be a whole number of seconds/],
    [['token', 'create', 'bob', '--expires-in', '0'], /--expires-in must be a whole number of seconds/],
    [['token', 'create', 'bob', '--scopes', ','], /--scopes needs at least one scope/],
    [['token', 'create', 'bob', '--name'], /argument missing/],
    [['token', 'revoke', 'abc'], /a token id is a positive whole number/],
    [['token', 'list', ' bob'], /username must not start or end with whitespace/]
  ]
  for (const [args, message] of cases) {
    r = await run(args)
    t.equal(r.code, 2, `${JSON.stringify(args)}: exit 2`)
    t.match(r.stderr, message)
    t.match(r.stderr, /^fastify-token-auth: /)
    t.equal(r.stdout, '')
  }
  r = await run(['token', 'list', 'bob'])
  t.match(r.stderr, /does not exist/, 'sanity: a valid command does open the database')
  r = await cli(['token', 'list', 'bob', '--data-dir', cwd], { cwd, env: { DATABASE_URL: 'postgres://127.0.0.1:1/x' } })
  t.equal(r.code, 2, '--data-dir with DATABASE_URL is a usage error')
})

t.test('on PostgreSQL (DATABASE_URL)', async (t) => {
  if (!requirePostgres(t)) return
  const { url, database, service } = await freshDatabase(t, { migrate: false })
  const cwd = tempDir(t)
  const target: Target = {
    run: (args, input) => cli(args, { cwd, env: { DATABASE_URL: url }, input }),
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

  const down = await cli(['token', 'list', 'alice'], { cwd, env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing' } })
  t.equal(down.code, 1, 'a server that does not answer: exit 1')
  t.match(down.stderr, /ECONNREFUSED/)
})
