// The `fastify-token-auth` bin end to end on the embedded database (PGlite in ./.data of the working
// directory, a temporary folder): migrated automatically, the whole story, and a clear message with
// exit status 1 while another process (the server of `npm start`) holds the directory.
import { existsSync } from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { createDatabase } from '../lib/store/database.js'
import { cli, cliInProcess, scenario, tempDir, type Target } from './helpers/cli.js'

t.test('on the embedded database (PGlite, ./.data of the working directory)', async (t) => {
  const cwd = tempDir(t)
  const dataDir = path.join(cwd, '.data')
  const target: Target = {
    run: (args, input) => cliInProcess(args, { cwd, env: {}, input }),
    withDatabase: async (fn) => {
      const database = await createDatabase(undefined, { dataDir })
      try {
        return await fn(database)
      } finally {
        await database.close()
      }
    }
  }
  // Migrated automatically: the first command on an empty directory works.
  let r = await target.run(['token', 'list', 'nobody'])
  t.equal(r.code, 1)
  t.match(r.stderr, /user "nobody" does not exist/, 'no "run migrate" on the embedded database: it migrates itself')
  t.ok(existsSync(path.join(dataDir, 'PG_VERSION')), 'the database is in ./.data')
  t.notOk(existsSync(path.join(dataDir, 'LOCK')), 'and its lock was released')

  await scenario(t, target)

  // Held by another process (as by the server from `npm start`): a clear message, exit 1.
  const held = await createDatabase(undefined, { dataDir })
  try {
    r = await cli(['token', 'list', 'alice'], { cwd, env: {} })
    t.equal(r.code, 1, 'busy: exit 1')
    t.match(r.stderr, /the embedded database \(.*\.data\) is in use by another process \(pid \d+\)/)
    t.match(r.stderr, /stop the server \(Ctrl-C\), run this command again/)
    t.match(r.stderr, /DATABASE_URL/)
    t.notMatch(r.stderr, /^\s+at /m, 'no stack trace')
    r = await target.run(['user', 'create', 'carol'], 'pw\n')
    t.equal(r.code, 1, 'user create while busy: exit 1')
  } finally {
    await held.close()
  }
  r = await target.run(['token', 'list', 'alice', '--json'])
  t.equal(r.code, 0, 'once released, the CLI opens it again')

  // --data-dir and TOKEN_AUTH_DATA_DIR pick another directory.
  const other = path.join(cwd, 'elsewhere')
  r = await cliInProcess(['token', 'list', 'alice', '--data-dir', other], { cwd, env: {} })
  t.match(r.stderr, /user "alice" does not exist/, '--data-dir: another database')
  r = await cliInProcess(['token', 'list', 'alice'], { cwd, env: { TOKEN_AUTH_DATA_DIR: other } })
  t.match(r.stderr, /user "alice" does not exist/, 'TOKEN_AUTH_DATA_DIR: the same other database')
  t.ok(existsSync(path.join(other, 'PG_VERSION')))
})
