// Tokens made from other tokens or from a password check, while those are being taken away: a token
// minted by POST /tokens or /login in the middle of a password change or a /logout/all does not
// survive it; a child never outlives its parent; a token whose user or parent went away gets 401
// invalid_token (not a 500); making room never revokes the token asking. And the options that
// would otherwise end tokens in use, or hang housekeeping, are refused at startup.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth, { createDatabase } from '../lib/index.js'
import { freshDatabase, query } from './helpers/db.js'
import { call, login, PASSWORD, tokenApps, user } from './helpers/token-app.js'

const { database, url } = await freshDatabase(t)
const { build } = tokenApps(t, database, { invalidTokens: false }, 1000)

const tokenIds = async (userId: number): Promise<number[]> =>
  (await query<{ id: number }>(database, 'select id from token_auth_tokens where user_id = $1 order by id', [userId])).map((r) => Number(r.id))

/**
 * A stolen token keeps asking POST /tokens (`streams` requests in flight at all times) while `revoke`
 * runs; resolves to the answers' status codes once every stream has stopped.
 */
async function mintDuring (app: FastifyInstance, stolen: string, revoke: () => Promise<unknown>, streams = 16): Promise<number[]> {
  const codes: number[] = []
  const state = { done: false }
  const stream = async (): Promise<void> => {
    while (!state.done) codes.push((await call(app, stolen, 'POST', '/tokens', { name: 'minted' })).statusCode)
  }
  const running = Array.from({ length: streams }, stream)
  await new Promise((resolve) => setTimeout(resolve, 30))
  await revoke()
  state.done = true
  await Promise.all(running)
  return codes
}

t.test('a password change with another token leaves none of the tokens a stolen one minted meanwhile', async (t) => {
  const app = await build()
  for (let round = 0; round < 5; round++) {
    const { name, id } = await user(app)
    const stolen = await login(app, name)
    const mine = await login(app, name)
    const mineId = (await call(app, mine, 'GET', '/me')).json().tokenId
    const codes = await mintDuring(app, stolen, async () => {
      const res = await call(app, mine, 'POST', '/password', { password: PASSWORD, newPassword: `${PASSWORD} ${round}` })
      t.equal(res.statusCode, 200, `round ${round}: password changed`)
    })
    t.ok(codes.includes(201), `round ${round}: the stolen token minted some before the change (${codes.filter((c) => c === 201).length})`)
    t.same([...new Set(codes)].filter((c) => c !== 201 && c !== 401), [], `round ${round}: every other answer a 401`)
    t.same(await tokenIds(id), [mineId], `round ${round}: only the token the change was made with is left`)
    t.equal((await call(app, stolen, 'GET', '/me')).statusCode, 401)
  }
})

t.test('/logout/all while a token mints others: none survives', async (t) => {
  const app = await build()
  for (let round = 0; round < 5; round++) {
    const { name, id } = await user(app)
    const stolen = await login(app, name)
    const mine = await login(app, name)
    const codes = await mintDuring(app, stolen, async () => {
      t.equal((await call(app, mine, 'POST', '/logout/all')).statusCode, 204)
    })
    t.ok(codes.includes(201), `round ${round}: some were minted before`)
    t.same(await tokenIds(id), [], `round ${round}: no token of the user is left`)
  }
})

t.test('a login whose password check passed before a password change gets no token', async (t) => {
  const app = await build()
  const service = app.tokenAuth.service!
  const { name, id } = await user(app)
  const checked = await service.verifyCredentials(name, PASSWORD)
  t.ok(checked)
  await service.setPassword(name, 'a new password, just set')
  await t.rejects(service.issueToken({ id }, { credentials: checked! }), { code: 'CREDENTIALS_CHANGED' })
  t.same(await tokenIds(id), [], 'no token issued')
  await t.rejects(service.issueToken({ id }, { credentials: { id, username: name } }), { code: 'INVALID_TOKEN_OPTIONS' }, 'credentials are only what verifyCredentials returned')
  // Logged in again, with the new password: fine, and rehashing on login does not count as a change.
  const again = await service.verifyCredentials(name, 'a new password, just set')
  t.ok((await service.issueToken({ id }, { credentials: again! })).token)

  // Over HTTP: logins racing a password change keep no token made with the old password.
  const { name: bob, id: bobId } = await user(app)
  const logins = Array.from({ length: 30 }, async () => await app.inject({ method: 'POST', url: '/login', payload: { username: bob, password: PASSWORD } }))
  await new Promise((resolve) => setTimeout(resolve, 5))
  await service.setPassword(bob, 'bob changed it')
  const answers = await Promise.all(logins)
  t.same([...new Set(answers.map((r) => r.statusCode))].filter((c) => c !== 200 && c !== 401), [], 'each login 200 or 401')
  t.same(await tokenIds(bobId), [], 'no token from the old password is left')
})

t.test('a child never outlives its parent; a revoked parent mints nothing', async (t) => {
  const app = await build({}, { routes: { throttle: false, tokenExpiresIn: 600 } })
  const { name, id } = await user(app)
  const parent = await login(app, name)
  const [{ expires: parentExpiry }] = await query<{ expires: Date }>(database, 'select expires_at as expires from token_auth_tokens where user_id = $1', [id])
  const longer = await call(app, parent, 'POST', '/tokens', { name: 'longer', expiresIn: 86400 })
  t.equal(longer.statusCode, 201)
  t.equal(Date.parse(longer.json().expiresAt), new Date(parentExpiry).getTime(), 'asked for a day: ends with its parent')
  const forever = await call(app, parent, 'POST', '/tokens', { name: 'forever' })
  t.equal(Date.parse(forever.json().expiresAt), new Date(parentExpiry).getTime(), 'asked for no expiry: ends with its parent')
  const shorter = await call(app, parent, 'POST', '/tokens', { name: 'shorter', expiresIn: 60 })
  t.ok(Date.parse(shorter.json().expiresAt) < new Date(parentExpiry).getTime() - 500_000, 'a shorter one keeps its own')
  const issued = await app.tokenAuth.service!.issueToken({ id }, { expiresIn: 86400, parentTokenId: longer.json().id })
  t.ok(issued.expiresIn! <= 600 && issued.expiresIn! > 590, `the service's answer says the lifetime it got (${issued.expiresIn} s)`)

  // Revoked where this process has not heard (another process, no NOTIFY yet): the cache still has it.
  t.equal((await call(app, parent, 'GET', '/me')).statusCode, 200)
  const parentId = (await call(app, parent, 'GET', '/me')).json().tokenId
  await query(database, 'delete from token_auth_tokens where id = $1', [parentId])
  const res = await call(app, parent, 'POST', '/tokens', { name: 'late' })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  t.equal((await query(database, 'select 1 from token_auth_tokens where name = $1', ['late'])).length, 0)
})

t.test('a token whose user went away meanwhile gets 401 invalid_token, not 500', async (t) => {
  const app = await build()
  const { name, id } = await user(app)
  const token = await login(app, name)
  t.equal((await call(app, token, 'GET', '/me')).statusCode, 200, 'cached')
  await query(database, 'update token_auth_users set active = false where id = $1', [id]) // the cache has not heard
  const res = await call(app, token, 'POST', '/tokens', { name: 'x' })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('revokeOldest never revokes the token asking; with a limit of 1 it refuses', async (t) => {
  const app = await build({ maxTokensPerUser: 2, onTokenLimit: 'revokeOldest' })
  const { name, id } = await user(app)
  const oldest = await login(app, name)
  await login(app, name)
  const res = await call(app, oldest, 'POST', '/tokens', { name: 'third' })
  t.equal(res.statusCode, 201)
  t.equal((await call(app, oldest, 'GET', '/me')).statusCode, 200, 'the token asking still works')
  t.equal((await tokenIds(id)).length, 2)

  const one = await build({ maxTokensPerUser: 1, onTokenLimit: 'revokeOldest' })
  const { name: solo } = await user(one)
  const only = await login(one, solo)
  const refused = await call(one, only, 'POST', '/tokens', { name: 'second' })
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_TOKEN_LIMIT')
  t.equal((await call(one, only, 'GET', '/me')).statusCode, 200)
})

t.test('options that would end tokens in use or hang housekeeping are refused at startup', async (t) => {
  await t.rejects(async () => { await Fastify().register(tokenAuth, { database, service: { slidingExpiry: 60 } }).ready() },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'service.slidingExpiry', message: /must be longer than drizzle.lastUsedInterval \(300000 ms\)/ })
  const ok = Fastify()
  await ok.register(tokenAuth, { database, service: { slidingExpiry: 600 }, drizzle: { lastUsedInterval: 60_000 } }).ready()
  await ok.close()
  if (url === undefined) return // the embedded database has no pool
  const single = await createDatabase(url, { max: 1 })
  t.teardown(() => single.close())
  await t.rejects(async () => { await Fastify().register(tokenAuth, { database: single }).ready() },
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'maintenance', message: /at least 2 connections/ })
  const without = Fastify()
  await without.register(tokenAuth, { database: single, maintenance: false }).ready()
  await without.close()
})
