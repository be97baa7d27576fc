// Changing the token prefix (service.prefix) keeps the tokens issued under the earlier ones working
// when they are listed in service.acceptPrefixes (django-rest-knox's
// test_tokens_created_before_prefix_still_work); new tokens get the new prefix.
import t from 'tap'
import { FAST_PASSWORD_PARAMS, freshDatabase } from './helpers/db.js'
import { appWith, bearer } from './helpers/http.js'

t.test('tokens made before the prefix changed still work, logout included', async (t) => {
  const { database, service } = await freshDatabase(t) // the default prefix, tat
  const { id } = await service.createUser('knox', 'pw')
  const old = (await service.issueToken(id)).token
  t.match(old, /^tat_/)

  const app = await appWith(t, { database, service: { prefix: 'acme', acceptPrefixes: ['tat'], passwordParams: FAST_PASSWORD_PARAMS } })
  app.get('/me', { preHandler: app.auth }, async (req) => req.user)
  t.equal((await app.inject({ url: '/me', headers: bearer(old) })).statusCode, 200, 'the old token works')
  const login = await app.inject({ method: 'POST', url: '/login', payload: { username: 'knox', password: 'pw' } })
  const fresh = login.json().token as string
  t.match(fresh, /^acme_[0-9A-Za-z]{36}$/, 'a new token has the new prefix')
  t.equal((await app.inject({ url: '/me', headers: bearer(fresh) })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/logout', headers: bearer(old) })).statusCode, 204, 'an old token can log out')
  t.equal((await app.inject({ url: '/me', headers: bearer(old) })).statusCode, 401)
  t.same(app.tokenAuth.service!.prefixes, ['acme', 'tat'])
})

t.test('without acceptPrefixes, a changed prefix refuses the earlier tokens (without a query)', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('knox', 'pw')
  const old = (await service.issueToken(id)).token
  const app = await appWith(t, { database, service: { prefix: 'acme' }, routes: false })
  app.get('/me', { preHandler: app.auth }, async (req) => req.user)
  t.equal((await app.inject({ url: '/me', headers: bearer(old) })).statusCode, 401)
})

t.test('acceptPrefixes are checked like the prefix', async (t) => {
  const { database } = await freshDatabase(t)
  await t.rejects(appWith(t, { database, service: { acceptPrefixes: ['Bad-One'] } }),
    { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'service.acceptPrefixes[0]', message: /must be a token prefix/ })
  await t.rejects(appWith(t, { database, service: { acceptPrefixes: 'tat' as never } }), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'service.acceptPrefixes' })
})
