// The app's own users table (issue: adoption by a real app), with both kinds of ids people use (uuid
// and integer): tokens reference the app's users (ON DELETE CASCADE), /login checks the app's bcrypt
// hashes, request.user is the app's shape, a disabled or deleted user is refused, and the service,
// the routes and the cache work the same way as with the plugin's own users.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth from '../lib/index.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'
import { applySchema, insertUser, integerSchema, sourceFor, uuidSchema, type AppSchema } from './helpers/app-schema.js'
import { freshDatabase, query, requirePostgres } from './helpers/db.js'
import { bearer } from './helpers/http.js'

const PASSWORD = 'correct horse battery staple'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

async function setup (t: Test, schema: AppSchema) {
  const { database } = await freshDatabase(t, { migrate: false })
  await applySchema(database, schema)
  const users = sourceFor(schema)
  const build = async (): Promise<FastifyInstance> => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(tokenAuth, { database, service: { users } })
    app.get('/me', { preHandler: app.auth }, async (req) => req.user)
    return app
  }
  const app = await build()
  const login = async (username: string, password: string) =>
    await app.inject({ method: 'POST', url: '/login', payload: { username, password } })
  return { database, users, app, build, login, service: app.tokenAuth.service! }
}

for (const [kind, makeSchema] of [['uuid', uuidSchema], ['integer', integerSchema]] as const) {
  t.test(`${kind} ids: login with the app's bcrypt password, request.user is the app's user`, async (t) => {
    const schema = makeSchema()
    const { database, app, login } = await setup(t, schema)
    const id = await insertUser(database, schema, 'ada@example.com', PASSWORD)
    if (kind === 'uuid') t.match(id, UUID)
    else t.equal(typeof id, 'number')

    const res = await login('  Ada@Example.com ', PASSWORD)
    t.equal(res.statusCode, 200, 'the login name goes through the app\'s normalizeLogin')
    const token = res.json().token
    const me = await app.inject({ url: '/me', headers: bearer(token) })
    t.equal(me.statusCode, 200)
    t.same(me.json(), { id, email: 'ada@example.com', tokenId: me.json().tokenId, scopes: ['tokens'] }, 'the app\'s columns, its id type, tokenId and scopes')
    t.equal(typeof me.json().tokenId, 'number')
    const rows = await query<{ user_id: unknown }>(database, 'select user_id from token_auth_tokens')
    t.same(rows, [{ user_id: id }], 'the token row references the app\'s user id')

    for (const [username, password, why] of [['ada@example.com', 'wrong', 'wrong password'], ['nobody@example.com', PASSWORD, 'unknown user']]) {
      const bad = await login(username, password)
      t.equal(bad.statusCode, 401, why)
      t.equal(bad.json().code, 'FST_TOKEN_AUTH_BAD_CREDENTIALS', why)
    }
    t.equal((await app.inject({ method: 'POST', url: '/logout', headers: bearer(token) })).statusCode, 204, 'logout')
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 401, 'the token is gone')
  })

  t.test(`${kind} ids: a disabled user is refused, at once after userChanged(); deleting a user deletes its tokens`, async (t) => {
    const schema = makeSchema()
    const { database, app, login, service } = await setup(t, schema)
    const table = kind === 'uuid' ? 'users' : 'accounts'
    const id = await insertUser(database, schema, 'bob@example.com', PASSWORD)
    const token = (await login('bob@example.com', PASSWORD)).json().token
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'cached now')

    await query(database, `update ${table} set disabled_at = now() where id = $1`, [id])
    t.equal((await login('bob@example.com', PASSWORD)).statusCode, 401, 'a disabled user cannot log in (same 401)')
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'its cached token lasts until the app says the user changed')
    await service.userChanged(id)
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 401, 'after userChanged: refused')

    await query(database, `update ${table} set disabled_at = null where id = $1`, [id])
    await service.userChanged(id)
    t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'enabled again: the token works again')
    const second = (await login('bob@example.com', PASSWORD)).json().token
    t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens'))[0].n, 2)
    await query(database, `delete from ${table} where id = $1`, [id])
    t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens'))[0].n, 0, 'ON DELETE CASCADE: the user\'s tokens are deleted with it')
    await service.userChanged(id)
    for (const tok of [token, second]) t.equal((await app.inject({ url: '/me', headers: bearer(tok) })).statusCode, 401, 'a deleted user\'s tokens are refused')
  })

  t.test(`${kind} ids: the service, /logout/all and listings`, async (t) => {
    const schema = makeSchema()
    const { database, app, login, service } = await setup(t, schema)
    const id = await insertUser(database, schema, 'cy@example.com', PASSWORD)
    const other = await insertUser(database, schema, 'di@example.com', PASSWORD)
    const issued = await service.issueToken('cy@example.com', { name: 'ci', scopes: ['read'] })
    const byId = await service.issueToken({ id }, { name: 'by id' })
    if (kind === 'integer') await service.issueToken(id as number, { name: 'by number' })
    t.same((await service.listTokens({ id })).map((tok) => tok.name), kind === 'integer' ? ['ci', 'by id', 'by number'] : ['ci', 'by id'])
    t.same((await service.listTokens('CY@example.com')).length, kind === 'integer' ? 3 : 2, 'by login name, normalized')
    t.match(await service.findUser('cy@example.com'), { id, username: 'cy@example.com', active: true })
    t.equal(await service.findUser('nobody@example.com'), null)
    await t.rejects(service.issueToken('nobody@example.com'), { code: 'USER_NOT_FOUND' })
    await t.rejects(service.issueToken({ id: kind === 'uuid' ? 'not-a-uuid' : 1.5 }), { code: 'USER_NOT_FOUND' }, 'an id of the wrong kind: no query, not found')
    await t.rejects(service.createUser('x@example.com', PASSWORD), { code: 'USERS_OWNED_BY_APP', message: /the users are the app's own/ })
    await t.rejects(service.setPassword('cy@example.com', PASSWORD), { code: 'USERS_OWNED_BY_APP' })
    await t.rejects(service.deactivateUser('cy@example.com'), { code: 'USERS_OWNED_BY_APP' })

    const mine = (await login('cy@example.com', PASSWORD)).json().token
    const theirs = (await login('di@example.com', PASSWORD)).json().token
    t.equal((await app.inject({ url: '/me', headers: bearer(issued.token) })).json().email, 'cy@example.com')
    t.equal((await app.inject({ method: 'POST', url: '/logout/all', headers: bearer(mine) })).statusCode, 204)
    for (const tok of [mine, issued.token, byId.token]) t.equal((await app.inject({ url: '/me', headers: bearer(tok) })).statusCode, 401, 'every token of the user is revoked')
    t.equal((await app.inject({ url: '/me', headers: bearer(theirs) })).statusCode, 200, 'no one else\'s')
    t.equal(await service.revokeAllTokens({ id: other }), 1)
    t.equal(await service.revokeAllTokens('di@example.com'), 0)
  })
}

t.test('another process drops a user\'s cached tokens when userChanged() is called in this one (NOTIFY)', async (t) => {
  if (!requirePostgres(t)) return
  const schema = uuidSchema()
  const { database, app, build, login, service } = await setup(t, schema)
  const other = await build()
  const id = await insertUser(database, schema, 'eve@example.com', PASSWORD)
  const token = (await login('eve@example.com', PASSWORD)).json().token
  t.equal((await other.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'cached in the other instance')
  await query(database, 'update users set disabled_at = now() where id = $1', [id])
  await service.userChanged(id)
  const start = Date.now()
  let status = 200
  while (status === 200 && Date.now() - start < 5000) {
    status = (await other.inject({ url: '/me', headers: bearer(token) })).statusCode
    if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(status, 401, `the other instance refuses it too (after ${Date.now() - start} ms)`)
  t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 401)
})

t.test('an unknown user costs one password check against a real hash (equal time)', async (t) => {
  const schema = uuidSchema()
  const { database } = await freshDatabase(t, { migrate: false })
  await applySchema(database, schema)
  const checked: string[] = []
  const users = sourceFor(schema, async (password, hash) => { checked.push(hash); return false })
  await insertUser(database, schema, 'fay@example.com', PASSWORD)
  const service = new TokenService(database, { users })
  t.equal(await service.verifyCredentials('nobody@example.com', PASSWORD), null)
  t.equal(await service.verifyCredentials('  ', PASSWORD), null, 'a name that cannot exist')
  t.equal(await service.verifyCredentials('fay@example.com', 'wrong'), null)
  t.equal(checked.length, 3, 'one check each: unknown, impossible and wrong alike')
  t.match(checked[0], /^\$2[aby]\$04\$/, 'against a hash of the app\'s kind and cost')
})

t.test('at startup: a missing table or column is one clear line; migrate() leaves the app\'s tables alone', async (t) => {
  const schema = uuidSchema()
  const { database } = await freshDatabase(t, { migrate: false })
  const users = sourceFor(schema)
  const start = async () => { const app = Fastify(); try { await app.register(tokenAuth, { database, service: { users } }) } finally { await app.close() } }
  await t.rejects(start(), {
    code: 'STORE_NOT_READY',
    message: /^table public\.token_auth_tokens does not exist in .*: the tables are your app's: generate and apply your drizzle-kit migrations/
  })
  await applySchema(database, schema)
  await query(database, 'alter table token_auth_tokens drop column hint')
  await t.rejects(start(), { code: 'STORE_NOT_READY', message: /^table public\.token_auth_tokens in .* has no column hint \(fastify-token-auth upgraded\?\)/ })
  await query(database, "alter table token_auth_tokens add column hint text not null default ''")
  await start()
  t.pass('starts once the tables are complete')
  await t.rejects(migrate(database), { code: 'MIGRATIONS_NOT_OURS', message: /they are your app's, kept up to date by your drizzle-kit migrations/ })
  t.equal((await query(database, "select count(*)::int as n from information_schema.tables where table_name = 'token_auth_users'"))[0].n, 0, 'migrate created nothing')
})
