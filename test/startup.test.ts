// The plugin's registration (and so ready() and listen()) fails with one clear line when the database
// cannot be used: unreachable, its tables missing (never migrated). No password, no driver stack.
import t from 'tap'
import Fastify from 'fastify'
import tokenAuth from '../lib/index.js'
import { createDatabase } from '../lib/store/database.js'
import { freshDatabase } from './helpers/db.js'

t.test('an unreachable database: StoreNotReadyError naming where, without the password', async (t) => {
  const database = await createDatabase('postgres://app:s3cret-pw@127.0.0.1:1/nothing', { connectTimeout: 2 })
  t.teardown(() => database.close())
  const app = Fastify()
  t.teardown(() => app.close())
  const err = await app.register(tokenAuth, { database }).ready().then(() => null, (e: Error & { code?: string }) => e)
  t.match(err, { code: 'STORE_NOT_READY', message: 'cannot use the database at app@127.0.0.1:1/nothing: nothing listens there (ECONNREFUSED)' })
  t.notMatch(String(err?.message), /s3cret/)
})

t.test('the plugin\'s tables missing (never migrated): says to run migrate', async (t) => {
  const { database } = await freshDatabase(t, { migrate: false })
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(tokenAuth, { database }).ready() }, {
    code: 'STORE_NOT_READY',
    message: /^table public\.token_auth_tokens does not exist in .*: run `fastify-token-auth migrate` \(or `await migrate\(database\)`\) first$/
  })
})
