import t from 'tap'

t.setTimeout(300_000)
import postgres from 'postgres'
import { freshDatabase, query, requirePostgres, FAST_PASSWORD_PARAMS } from './helpers/db.js'
import {
  InvalidPasswordError, InvalidTokenOptionsError, InvalidUsernameError, UserExistsError, UserInactiveError, UserNotFoundError
} from '../lib/store/errors.js'
import { chunkPayloads, NOTIFY_PAYLOAD_MAX_BYTES } from '../lib/store/notify.js'
import { TokenService } from '../lib/store/service.js'
import { normalizeUsername } from '../lib/store/usernames.js'
import { checkTokenFormat, hashToken } from '../lib/store/token-format.js'

const PW = 'correct horse battery staple'
// Raw postgres.js queries return timestamps as strings (drizzle installs pass-through parsers).
const escape = (s: string): string => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
const toDate = (v: unknown): Date => v instanceof Date ? v : new Date(String(v))

t.test('normalizeUsername', async (t) => {
  t.equal(normalizeUsername('Alice'), 'alice')
  t.equal(normalizeUsername('ＡＬＩＣＥ'), 'alice', 'fullwidth folds to ASCII (NFKC)')
  t.equal(normalizeUsername('Ｅ\u0301mile'), '\u00e9mile', 'composed')
  t.equal(normalizeUsername('bob smith'), 'bob smith', 'inner spaces are kept')
  t.equal(normalizeUsername('x'.repeat(150)), 'x'.repeat(150))
  for (const bad of ['', ' alice', 'alice ', '\talice', 'al\nice', 'a\0', 'a\u0085b', 'a\u2028', 'x'.repeat(151), '\u3000alice']) {
    t.throws(() => normalizeUsername(bad), InvalidUsernameError, escape(bad))
  }
  t.throws(() => normalizeUsername(7 as unknown as string), /must be a string/)
})

t.test('users: create, duplicates, passwords, verification', async (t) => {
  const { database, service } = await freshDatabase(t)
  const alice = await service.createUser('Alice', PW)
  t.match(alice, { id: Number, username: 'alice' })
  await t.rejects(service.createUser('ALICE', 'x'), UserExistsError, 'same name in another case')
  await t.rejects(service.createUser('ａｌｉｃｅ', 'x'), { code: 'USER_EXISTS' }, 'same name in fullwidth')
  await t.rejects(service.createUser(' bob', 'x'), InvalidUsernameError)
  await t.rejects(service.createUser('bob', ''), InvalidPasswordError)
  await t.rejects(service.createUser('bob', 'a\0b'), InvalidPasswordError)
  t.equal((await query(database, 'select count(*)::int as n from token_auth_users'))[0].n, 1, 'no rows for refused users')

  const [row] = await query<{ password_hash: string, active: boolean, last_login_at: Date | null }>(database,
    'select password_hash, active, last_login_at from token_auth_users where id = $1', [alice.id])
  t.match(row.password_hash, /^scrypt\$ln=10,r=8,p=1\$/)
  t.notOk(row.password_hash.includes(PW))
  t.equal(row.active, true)
  t.equal(row.last_login_at, null)

  t.same(await service.verifyCredentials('ALICE', PW), { id: alice.id, username: 'alice' }, 'any case logs in')
  const [after] = await query<{ last_login_at: Date | null }>(database, 'select last_login_at from token_auth_users where id = $1', [alice.id])
  t.ok(after.last_login_at !== null && Math.abs(toDate(after.last_login_at).getTime() - Date.now()) < 60_000, 'last_login_at set')
  t.equal(await service.verifyCredentials('alice', PW + 'x'), null, 'wrong password')
  t.equal(await service.verifyCredentials('nobody', PW), null, 'unknown user')
  t.equal(await service.verifyCredentials(' alice', PW), null, 'invalid username')
  t.equal(await service.verifyCredentials('alice', 'x'.repeat(2000)), null, 'over-long password')

  await service.setPassword('alice', 'new password')
  t.equal(await service.verifyCredentials('alice', PW), null, 'old password no longer works')
  t.ok(await service.verifyCredentials('alice', 'new password'))
  await t.rejects(service.setPassword('nobody', 'x'), UserNotFoundError)

  t.match(await service.findUser('Alice'), { id: alice.id, username: 'alice', active: true, createdAt: Date })
  t.notOk('passwordHash' in (await service.findUser(alice.id))!, 'no password hash in findUser')
  t.equal(await service.findUser('nobody'), null)
})

t.test('concurrent createUser of one name: exactly one wins', async (t) => {
  const { service } = await freshDatabase(t)
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => service.createUser('carol', PW)))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  for (const r of results) if (r.status === 'rejected') t.type(r.reason, UserExistsError)
})

t.test('verifyCredentials: inactive user is refused; rehash on login when parameters change', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('dave', PW)
  const stronger = new TokenService(database, { passwordParams: { ln: 11 } })
  t.ok(await stronger.verifyCredentials('dave', PW))
  const [row] = await query<{ password_hash: string }>(database, 'select password_hash from token_auth_users where id = $1', [id])
  t.match(row.password_hash, /^scrypt\$ln=11,r=8,p=1\$/, 'upgraded to the new parameters')
  t.equal(await stronger.verifyCredentials('dave', 'wrong'), null)
  const [again] = await query<{ password_hash: string }>(database, 'select password_hash from token_auth_users where id = $1', [id])
  t.equal(again.password_hash, row.password_hash, 'no rehash on a failed login')
  t.ok(await service.verifyCredentials('dave', PW), 'still verifies through the self-describing string')

  await service.deactivateUser('dave')
  t.equal(await service.verifyCredentials('dave', PW), null, 'inactive user: same null as a wrong password')
  await t.rejects(service.issueToken(id), UserInactiveError)
  await t.rejects(service.issueToken('Dave'), { name: 'UserInactiveError', message: 'user "Dave" is deactivated' })
  await t.rejects(service.deactivateUser('nobody'), UserNotFoundError)
})

t.test('tokens: issue, stored hashed, list, expiry', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id: userId } = await service.createUser('erin', PW)
  const before = Date.now()
  const issued = await service.issueToken(userId, { name: 'laptop', scopes: ['read', 'write', 'read'], expiresIn: 3600 })
  t.ok(checkTokenFormat(issued.token, 'tat'), 'a well-formed tat_ token')
  t.same(issued.scopes, ['read', 'write'], 'duplicates removed')
  t.equal(issued.name, 'laptop')
  t.type(issued.expiresAt, Date)
  const ms = issued.expiresAt!.getTime() - before
  t.ok(ms > 3590_000 && ms < 3610_000, `expires in about an hour (${ms} ms)`)
  const forever = await service.issueToken('ERIN')
  t.equal(forever.expiresAt, null, 'no expiresIn: never expires')
  t.not(forever.token, issued.token)

  const texts = await query<{ row: string }>(database, 'select row_to_json(t)::text as row from token_auth_tokens t')
  t.equal(texts.length, 2)
  for (const { row } of texts) {
    t.notOk(row.includes(issued.token), 'the plain token is nowhere in the table')
    t.notOk(row.includes(issued.token.slice(8)), 'not even its secret part')
    t.notOk(row.includes(forever.token.slice(8)))
  }
  const [stored] = await query<Record<string, unknown>>(database,
    'select token_hash, hint, name, array_to_json(scopes)::text as scopes, expires_at, last_used_at, user_id::int as user_id from token_auth_tokens where id = $1', [issued.id])
  t.match(stored, {
    token_hash: hashToken(issued.token), hint: issued.token.slice(0, 8), name: 'laptop', scopes: '["read","write"]', last_used_at: null, user_id: userId
  })
  t.equal(toDate(stored.expires_at).getTime(), issued.expiresAt!.getTime(), 'expires_at stored as returned')

  const list = await service.listTokens('erin')
  t.equal(list.length, 2)
  t.same(Object.keys(list[0]).sort(), ['createdAt', 'expiresAt', 'hint', 'id', 'lastUsedAt', 'name', 'scopes'], 'no secret, no hash')
  t.match(list[0], { id: issued.id, name: 'laptop', hint: /^tat_[0-9A-Za-z]{4}$/, scopes: ['read', 'write'], createdAt: Date, lastUsedAt: null, expiresAt: Date })
  t.match(list[1], { id: forever.id, name: '', scopes: [], expiresAt: null })
  t.same(await service.listTokens(userId), list, 'by id too')
  await t.rejects(service.listTokens('nobody'), UserNotFoundError)

  await service.touchTokens([issued.id, 999999])
  t.type((await service.listTokens(userId))[0].lastUsedAt, Date, 'touchTokens sets last_used_at')
  await service.touchTokens([])

  await t.rejects(service.issueToken(999999), UserNotFoundError)
  await t.rejects(service.issueToken('nobody'), UserNotFoundError)
  await t.rejects(service.issueToken(1.5), UserNotFoundError)
  await t.rejects(service.issueToken(userId, { expiresIn: 0 }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { expiresIn: 1.5 }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { expiresIn: 1e12 }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { scopes: ['a b'] }), { code: 'INVALID_TOKEN_OPTIONS' })
  await t.rejects(service.issueToken(userId, { scopes: ['a"b'] }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { scopes: [''] }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { scopes: 'read' as unknown as string[] }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { name: 'x'.repeat(201) }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { name: 'a\nb' }), InvalidTokenOptionsError)
  await t.rejects(service.issueToken(userId, { name: 5 as unknown as string }), InvalidTokenOptionsError)
  t.equal((await service.listTokens(userId)).length, 2, 'no rows for refused issues')

  const custom = new TokenService(database, { prefix: 'myapp', passwordParams: FAST_PASSWORD_PARAMS })
  t.ok(checkTokenFormat((await custom.issueToken(userId)).token, 'myapp'), 'configurable prefix')
  t.throws(() => new TokenService(database, { prefix: 'My-App' }), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'TokenService.prefix', message: /option TokenService\.prefix must be a token prefix/ })
  t.throws(() => new TokenService(database, { notifyChannel: 'Bad Channel' }), { option: 'TokenService.notifyChannel', message: /option TokenService\.notifyChannel must be a NOTIFY channel/ })
  t.throws(() => new TokenService(undefined as never), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', option: 'TokenService.database', message: /must be a database \(\{ db \}\)/ })
})

t.test('revocation deletes rows and is reported in process, synchronously', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id: u1 } = await service.createUser('frank', PW)
  const { id: u2 } = await service.createUser('grace', PW)
  const a = await service.issueToken(u1)
  const b = await service.issueToken(u1)
  const c = await service.issueToken(u1)
  const d = await service.issueToken(u2)
  const seen: string[][] = []
  const off = service.onRevoke((hashes) => { seen.push(hashes) })

  const p = service.revokeToken(a.id)
  t.equal(seen.length, 0)
  t.equal(await p, true)
  t.same(seen, [[hashToken(a.token)]], 'emitted before the promise resolved')
  t.equal(await service.revokeToken(a.id), false, 'already gone')
  t.equal(seen.length, 1, 'nothing emitted when nothing was deleted')
  t.equal(await service.revokeToken(d.id, { userId: u1 }), false, "another user's token is not revoked with userId")
  t.equal(await service.revokeTokenByHash(hashToken(b.token)), true)
  t.same(seen[1], [hashToken(b.token)])
  t.equal(await service.revokeAllTokens('Frank'), 1)
  t.same(seen[2], [hashToken(c.token)])
  t.equal(await service.revokeAllTokens(u1), 0)
  const ids = (await query<{ id: number }>(database, 'select id::int as id from token_auth_tokens')).map((r) => r.id)
  t.same(ids, [d.id], "only grace's token is left")

  off()
  await service.revokeToken(d.id)
  t.equal(seen.length, 3, 'unsubscribed')

  const e = await service.issueToken(u2)
  service.onRevoke(() => { throw new Error('listener bug') })
  await t.rejects(service.revokeToken(e.id), { name: 'AggregateError', message: /revoked, but an onRevoke listener threw/ })
  t.same(await service.listTokens(u2), [], 'the token was revoked anyway')
})

t.test('deactivateUser: inactive and every token revoked, in one transaction', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('heidi', PW)
  const tokens = await Promise.all([1, 2, 3].map(() => service.issueToken(id)))
  const other = await service.createUser('ivan', PW)
  await service.issueToken(other.id)
  const seen: string[] = []
  service.onRevoke((h) => seen.push(...h))
  const notified: string[] = []
  const unlisten = await database.listen('token_auth_revoked', (p) => notified.push(...p.split(',')))
  t.same(await service.deactivateUser('HEIDI'), { id, revoked: 3 })
  t.same(seen.sort(), tokens.map((x) => hashToken(x.token)).sort())
  t.same((await query(database, 'select active from token_auth_users where id = $1', [id]))[0], { active: false })
  t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens where user_id = $1', [id]))[0].n, 0)
  t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens'))[0].n, 1, "others' tokens remain")
  const deadline = Date.now() + 2000
  while (notified.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(notified.sort(), seen.sort(), 'NOTIFY through database.listen carries the hashes')
  await unlisten()
})

t.test('pruneExpired removes only expired tokens', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('judy', PW)
  const expired = await service.issueToken(id, { expiresIn: 60 })
  const live = await service.issueToken(id, { expiresIn: 3600 })
  const forever = await service.issueToken(id)
  await query(database, "update token_auth_tokens set expires_at = now() - interval '1 second' where id = $1", [expired.id])
  const seen: string[] = []
  service.onRevoke((h) => seen.push(...h))
  t.equal(await service.pruneExpired(), 1)
  t.same(seen, [hashToken(expired.token)])
  t.same((await service.listTokens(id)).map((x) => x.id), [live.id, forever.id])
  t.equal(await service.pruneExpired(), 0)

  // more than one batch
  await query(database, `insert into token_auth_tokens (user_id, token_hash, expires_at)
    select $1, md5(i::text) || md5('x' || i), now() - interval '1 minute' from generate_series(1, 5200) i`, [id])
  t.equal(await service.pruneExpired(), 5200)
  t.equal(seen.length, 5201)
  t.equal((await service.listTokens(id)).length, 2)
})

t.test('deleting a user deletes their tokens (foreign key cascade)', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('ken', PW)
  await service.issueToken(id)
  await query(database, 'delete from token_auth_users where id = $1', [id])
  t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens'))[0].n, 0)
})

t.test('chunkPayloads keeps each NOTIFY payload under the limit', async (t) => {
  t.same(chunkPayloads([]), [])
  t.same(chunkPayloads(['a', 'b']), ['a,b'])
  t.same(chunkPayloads(['aa', 'bb', 'cc'], 5), ['aa,bb', 'cc'])
  const hashes = Array.from({ length: 1000 }, (_, i) => hashToken(String(i)))
  const chunks = chunkPayloads(hashes)
  for (const c of chunks) t.ok(Buffer.byteLength(c) < NOTIFY_PAYLOAD_MAX_BYTES + 1)
  t.same(chunks.join(',').split(','), hashes)
  t.equal(chunks.length, Math.ceil(1000 / Math.floor((NOTIFY_PAYLOAD_MAX_BYTES + 1) / 65)))
})

t.test('NOTIFY reaches a separate connection, chunked, only after commit', async (t) => {
  if (!requirePostgres(t)) return
  // Hundreds of tokens for one user: no token limit here.
  const { url, service } = await freshDatabase(t, { service: { passwordParams: FAST_PASSWORD_PARAMS, maxTokensPerUser: false } })
  const listener = postgres(url!, { max: 1, onnotice: () => {} })
  t.teardown(() => listener.end({ timeout: 5 }))
  const payloads: string[] = []
  await listener.listen('token_auth_revoked', (p) => payloads.push(p))
  const custom: string[] = []
  await listener.listen('my_channel', (p) => custom.push(p))

  const { id } = await service.createUser('leo', PW)
  const many = await Promise.all(Array.from({ length: 300 }, () => service.issueToken(id)))
  t.equal(await service.revokeAllTokens(id), 300)
  const deadline = Date.now() + 3000
  while (payloads.join(',').split(',').length < 300 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(payloads.length >= 3, `${payloads.length} payloads for 300 hashes`)
  for (const p of payloads) t.ok(Buffer.byteLength(p) < 7900, 'each payload < 7900 bytes')
  t.same(payloads.join(',').split(',').sort(), many.map((x) => hashToken(x.token)).sort(), 'every hash arrives')

  const other = new TokenService({ db: service.db }, { notifyChannel: 'my_channel', passwordParams: FAST_PASSWORD_PARAMS })
  const x = await other.issueToken(id)
  await other.revokeToken(x.id)
  const until = Date.now() + 2000
  while (custom.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(custom, [hashToken(x.token)], 'configurable channel')
})

t.test('issueToken racing deactivateUser leaves no usable token', async (t) => {
  const { database, service } = await freshDatabase(t)
  const { id } = await service.createUser('mia', PW)
  const issues = Array.from({ length: 20 }, () => service.issueToken(id).catch((err: unknown) => err))
  const deactivation = service.deactivateUser('mia')
  const results = await Promise.all([...issues, deactivation])
  for (const r of results.slice(0, 20)) if (r instanceof Error) t.type(r, UserInactiveError)
  t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens t join token_auth_users u on u.id = t.user_id where u.active'))[0].n, 0)
  t.equal((await query(database, 'select count(*)::int as n from token_auth_tokens'))[0].n, 0, 'no token of the deactivated user survives')
})

t.test('bidi, zero-width and other format characters are refused in usernames and token names', async (t) => {
  const { service } = await freshDatabase(t)
  const { id } = await service.createUser('plain', PW)
  for (const bad of ['ad\u202Emin', 'ad\u200Bmin', '\uFEFFadmin', 'ad\u2066min', 'soft\u00ADhyphen', 'priv\uE000ate']) {
    await t.rejects(service.createUser(bad, PW), { code: 'INVALID_USERNAME', message: /control, format \(bidi, zero-width\) or unassigned/ }, JSON.stringify(bad))
    await t.rejects(service.issueToken(id, { name: bad }), { code: 'INVALID_TOKEN_OPTIONS', message: /token name must not contain control, format/ }, JSON.stringify(bad))
  }
  t.ok(await service.createUser('émile', PW), 'letters of any script are fine')
  t.ok(await service.issueToken(id, { name: 'Émile’s phone 📱' }), 'and emoji in a token name')
})
