// Read replicas, against a real streaming replica this file starts (test/helpers/pg-cluster.ts):
// lookups are read from the replica; a token it does not have yet (replay paused), or has as expired,
// is found on the primary, so /login's token works at once; the replica down is no 503; a token revoked while the
// replica lags is refused (revoked here, by another instance, or, with the lag check, by anyone);
// the primary down leaves the replica answering for the tokens it has, and 503 for the rest.
// No fixed sleeps: what depends on timers (NOTIFY, the lag check) is polled with a generous deadline.
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import { createDatabase, type CreateDatabaseOptions, type Database } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'
import { generateToken, hashToken } from '../lib/store/token-format.js'
import { FAST_PASSWORD_PARAMS } from './helpers/db.js'
import { bearer } from './helpers/http.js'
import { PgClusterError, startCluster, type Cluster } from './helpers/pg-cluster.js'

t.setTimeout(300_000)
const WAIT_MS = 30_000
const PASSWORD = 'correct horse battery staple'

async function eventually (what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('options: replicas are postgres:// URLs, never quoted back, and need a PostgreSQL url', async (t) => {
  const invalid = { code: 'FST_TOKEN_AUTH_INVALID_OPTION' }
  await t.rejects(createDatabase(undefined, { replicas: ['postgres://127.0.0.1:1/x'] }), { ...invalid, option: 'replicas', message: /needs a PostgreSQL url/ })
  await t.rejects(createDatabase(undefined, { memory: true, replicas: ['postgres://127.0.0.1:1/x'] }), { ...invalid, option: 'replicas' })
  const err = await createDatabase('postgres://127.0.0.1:1/x', { replicas: ['http://app:hunter2@replica/db'] }).catch((e: Error) => e)
  t.match(err, { ...invalid, option: 'replicas[0]', message: /must be a postgres:\/\/ URL/ })
  t.notMatch((err as Error).message, /hunter2/, 'the password is not in the message')
  await t.rejects(createDatabase('postgres://127.0.0.1:1/x', { replicas: 'postgres://127.0.0.1:1/y' as never }), { ...invalid, option: 'replicas' })
  await t.rejects(createDatabase('postgres://127.0.0.1:1/x', { replicas: [], replicaMaxLag: 0 }), { ...invalid, option: 'replicaMaxLag' })
  await t.rejects(createDatabase('postgres://127.0.0.1:1/x', { replicaRetry: Infinity }), { ...invalid, option: 'replicaRetry' })
  await t.rejects(createDatabase('postgres://127.0.0.1:1/x', { replicaTimeout: '1s' as never }), { ...invalid, option: 'replicaTimeout' })
  const plain = await createDatabase('postgres://127.0.0.1:1/x')
  t.equal(plain.replicas, undefined, 'no replicas: no ReplicaSet')
  await plain.close()
})

function suite (cluster: Cluster): void {
  t.teardown(() => cluster.stop())
  const replicaUrl = cluster.replicaUrl!

  /** One query on the replica (its own short-lived pool). */
  async function onReplica (text: string, params: string[] = []): Promise<Array<Record<string, unknown>>> {
    const db = await createDatabase(replicaUrl, { max: 1 })
    try {
      return [...await db.sql!.unsafe(text, params)]
    } finally {
      await db.close()
    }
  }
  const replicated = (): Promise<void> => eventually('the replica to catch up', async () => await cluster.replicationLagBytes() === 0)

  interface Instance { app: FastifyInstance, database: Database, lookups: () => { replicaQueries: number, primaryFallbacks: number } }
  /** An app instance (its own pools and LISTEN, like another process) reading from the replica. */
  async function instance (t: Test, dbOptions: CreateDatabaseOptions = {}, opts: Partial<TokenAuthOptions> = {}): Promise<Instance> {
    const database = await createDatabase(cluster.url, { replicas: [replicaUrl], connectTimeout: 2, ...dbOptions })
    const app = Fastify()
    t.teardown(async () => {
      await app.close()
      await database.close()
    })
    await app.register(tokenAuth, {
      database,
      service: { passwordParams: FAST_PASSWORD_PARAMS },
      routes: { throttle: false },
      maintenance: false,
      ...opts
    })
    app.get('/me', { preHandler: app.auth }, async (request) => ({ user: request.user }))
    await app.ready()
    await database.replicas!.checked()
    const lookups = (): { replicaQueries: number, primaryFallbacks: number } => {
      const { replicaQueries, primaryFallbacks } = app.tokenAuth.metrics().lookups
      return { replicaQueries, primaryFallbacks }
    }
    return { app, database, lookups }
  }
  const login = async (app: FastifyInstance): Promise<string> => {
    const res = await app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: PASSWORD } })
    if (res.statusCode !== 200) throw new Error(`login: ${res.statusCode} ${res.body}`)
    return res.json().token
  }
  const me = (app: FastifyInstance, token: string) => app.inject({ url: '/me', headers: bearer(token) })
  /** Replay paused for the test (resumed, and caught up, at its end). */
  async function pauseReplay (t: Test): Promise<void> {
    await cluster.pauseReplay()
    t.teardown(async () => {
      await cluster.resumeReplay()
      await replicated()
    })
  }
  const onReplicaCount = async (token: string): Promise<number> =>
    (await onReplica('select count(*)::int as n from token_auth_tokens where token_hash = $1', [hashToken(token)]))[0].n as number

  t.before(async () => {
    const setup = await createDatabase(cluster.url)
    await migrate(setup)
    await new TokenService(setup, { passwordParams: FAST_PASSWORD_PARAMS }).createUser('alice', PASSWORD)
    await setup.close()
    await replicated()
  })

  t.test('a lookup is read from the replica', async (t) => {
    const { app, lookups } = await instance(t, {}, { drizzle: { cache: false } })
    const token = await login(app)
    await replicated()
    const before = lookups()
    const res = await me(app, token)
    t.equal(res.statusCode, 200)
    t.match(res.json().user, { username: 'alice' })
    t.same(lookups(), { replicaQueries: before.replicaQueries + 1, primaryFallbacks: before.primaryFallbacks }, 'answered by the replica alone')
    t.equal((await me(app, generateToken('tat'))).statusCode, 401, 'an unknown token: 401 (replica, then primary)')
    t.equal(lookups().primaryFallbacks, before.primaryFallbacks + 1, 'its "no" was asked again of the primary')
  })

  t.test('replay paused: the token /login returns works at once (not found on the replica → the primary)', async (t) => {
    // The lag check off: the replica is asked although it is behind, so it is the re-check that answers.
    const { app, lookups } = await instance(t, { replicaMaxLag: false }, { drizzle: { cache: false } })
    await pauseReplay(t)
    const token = await login(app)
    t.equal(await onReplicaCount(token), 0, 'the replica does not have the token')
    const before = lookups()
    const res = await me(app, token)
    t.equal(res.statusCode, 200, 'usable the moment /login returned it')
    t.match(res.json().user, { username: 'alice' })
    t.same(lookups(), { replicaQueries: before.replicaQueries + 1, primaryFallbacks: before.primaryFallbacks + 1 }, 'replica said no, primary yes')
    t.equal((await me(app, generateToken('tat'))).statusCode, 401, 'an unknown token is still 401')

    // With the lag check (the default) as well.
    const checked = await instance(t, {}, { drizzle: { cache: false } })
    const other = await login(checked.app)
    t.equal((await me(checked.app, other)).statusCode, 200)
  })

  t.test('replay paused, tokens asked at once: the replica answers those it has, the primary only the rest', async (t) => {
    const { app, lookups } = await instance(t, { replicaMaxLag: false }, { drizzle: { cache: false } })
    const old = [await login(app), await login(app), await login(app)]
    await replicated()
    await pauseReplay(t)
    const fresh = await login(app)
    t.equal(await onReplicaCount(fresh), 0, 'the replica does not have the newest token')
    const before = lookups()
    const answers = await Promise.all([...old, fresh, generateToken('tat')].map(async (token) => await me(app, token)))
    t.same(answers.map((r) => r.statusCode), [200, 200, 200, 200, 401], 'replicated tokens, the newest one and an unknown one')
    t.same(lookups(), { replicaQueries: before.replicaQueries + 1, primaryFallbacks: before.primaryFallbacks + 1 },
      'one query on the replica for all five, one on the primary for the two it could not confirm')
  })

  t.test('replay paused: a token expired on the replica but extended on the primary (sliding expiry) works', async (t) => {
    const { app, database, lookups } = await instance(t, { replicaMaxLag: false }, { drizzle: { cache: false } })
    const token = await login(app)
    const setExpiry = (when: string): Promise<unknown> =>
      database.sql!.unsafe(`update token_auth_tokens set expires_at = now() + interval '${when}' where token_hash = $1`, [hashToken(token)])
    await setExpiry('-1 hour')
    await replicated()
    t.equal((await me(app, token)).statusCode, 401, 'expired everywhere: 401')
    await pauseReplay(t)
    await setExpiry('1 hour')
    const before = lookups()
    t.equal((await me(app, token)).statusCode, 200, "the replica's \"expired\" was asked again of the primary")
    t.same(lookups(), { replicaQueries: before.replicaQueries + 1, primaryFallbacks: before.primaryFallbacks + 1 })
  })

  t.test('the replica down: lookups fall back to the primary (no 503), and go back to it once up', async (t) => {
    const { app, lookups } = await instance(t, { replicaRetry: 200 }, { drizzle: { cache: false } })
    const token = await login(app)
    await replicated()
    await cluster.stopReplica()
    t.teardown(async () => { await cluster.startReplica().catch(() => {}) }) // in case an assertion threw first
    const before = lookups()
    for (let i = 0; i < 3; i++) t.equal((await me(app, token)).statusCode, 200, `request ${i + 1}: 200 from the primary`)
    t.equal((await me(app, generateToken('tat'))).statusCode, 401, 'an unknown token: 401, not 503')
    const fresh = await login(app)
    t.equal((await me(app, fresh)).statusCode, 200, 'a new token works')
    t.equal(lookups().primaryFallbacks - before.primaryFallbacks, 5, 'every lookup went to the primary')

    await cluster.startReplica()
    await replicated()
    await eventually('a lookup answered by the replica again', async () => {
      const n = lookups()
      const ok = (await me(app, token)).statusCode === 200
      const m = lookups()
      return ok && m.replicaQueries === n.replicaQueries + 1 && m.primaryFallbacks === n.primaryFallbacks
    })
    t.pass('the replica answers again')
  })

  t.test('replica lagging: a token revoked here is refused, though the replica still has it', async (t) => {
    // The lag check off: only what this process knows of the revocation keeps it off the replica.
    const { app } = await instance(t, { replicaMaxLag: false })
    const token = await login(app)
    await replicated()
    t.equal((await me(app, token)).statusCode, 200, 'cached')
    await pauseReplay(t)
    t.equal((await app.inject({ method: 'POST', url: '/logout', headers: bearer(token) })).statusCode, 204)
    t.equal(await onReplicaCount(token), 1, 'the lagging replica still has the revoked token')
    const res = await me(app, token)
    t.equal(res.statusCode, 401, 'refused: read from the primary')
    t.equal(res.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  })

  t.test('replica lagging: a token revoked by another instance is refused once its NOTIFY arrives', async (t) => {
    const a = await instance(t, { replicaMaxLag: false })
    const b = await instance(t, { replicaMaxLag: false })
    const token = await login(b.app)
    await replicated()
    t.equal((await me(a.app, token)).statusCode, 200, 'instance A knows the token (cached)')
    await pauseReplay(t)
    t.equal((await b.app.inject({ method: 'POST', url: '/logout', headers: bearer(token) })).statusCode, 204, 'revoked through instance B')
    t.equal(await onReplicaCount(token), 1, 'the lagging replica still has it')
    await eventually('instance A refuses the token', async () => (await me(a.app, token)).statusCode === 401)
    // And keeps refusing it (the replica still has the row): every read of it goes to the primary.
    for (let i = 0; i < 3; i++) t.equal((await me(a.app, token)).statusCode, 401)
  })

  t.test('replica lagging past replicaMaxLag: not read from (a revocation this process never heard of)', async (t) => {
    // A row deleted on the primary without a NOTIFY: only the lag check can tell the replica is behind.
    const checked = await instance(t, { replicaMaxLag: 500 }, { drizzle: { cache: false } })
    const unchecked = await instance(t, { replicaMaxLag: false }, { drizzle: { cache: false } })
    const token = await login(checked.app)
    await replicated()
    t.equal((await me(checked.app, token)).statusCode, 200)
    await pauseReplay(t)
    await checked.database.sql!.unsafe('delete from token_auth_tokens where token_hash = $1', [hashToken(token)])
    t.equal(await onReplicaCount(token), 1, 'the lagging replica still has it')
    // What the lag check is for: without it, the replica's stale yes is taken.
    t.equal((await me(unchecked.app, token)).statusCode, 200, 'lag not checked: the replica is trusted (the documented bound)')
    await eventually('the lag check sends the lookups to the primary', async () => (await me(checked.app, token)).statusCode === 401)
    const before = checked.lookups()
    t.equal((await me(checked.app, token)).statusCode, 401)
    t.same(checked.lookups(), { replicaQueries: before.replicaQueries, primaryFallbacks: before.primaryFallbacks + 1 }, 'the replica is not asked')
  })

  // Last: it stops the primary.
  t.test('the primary down: the replica answers for the tokens it has; the rest is 503', async (t) => {
    const maxLag = 200
    const { app, database } = await instance(t, { replicaMaxLag: maxLag }, { drizzle: { cache: false } })
    const token = await login(app)
    await replicated()
    await cluster.stopPrimary()
    t.teardown(async () => { await cluster.startPrimary().catch(() => {}) })
    // Past maxLag after the stop, no lag check since has succeeded (they need the primary): the replica
    // is no longer known to be within maxLag, and answers because the primary is known to be away.
    const stoppedAt = Date.now()
    await eventually('maxLag to pass since the stop', async () => Date.now() > stoppedAt + 2 * maxLag)
    await eventually('the replica answers while the primary is down', async () => (await me(app, token)).statusCode === 200)
    t.match((await me(app, token)).json().user, { username: 'alice' })
    const unknown = await me(app, generateToken('tat'))
    t.equal(unknown.statusCode, 503, 'not on the replica, and the primary cannot say: unavailable, never 401')
    t.equal(unknown.json().code, 'FST_TOKEN_AUTH_UNAVAILABLE')
    // Asked at once (one batch): a forged token beside a good one fails alone.
    const together = await Promise.all([me(app, token), me(app, generateToken('tat')), me(app, token)])
    t.same(together.map((r) => r.statusCode), [200, 503, 200], 'in one batch, the good token 200, the unknown one 503')
    t.equal((await app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: PASSWORD } })).statusCode, 503, 'writes: 503')

    await cluster.startPrimary()
    await eventually('logins work again', async () =>
      (await app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: PASSWORD } })).statusCode === 200)
    t.equal((await me(app, token)).statusCode, 200)
    t.ok(database.replicas!.size === 1)
  })
}

try {
  suite(await startCluster({ replica: true }))
} catch (err) {
  // Like requirePostgres(): without the PostgreSQL binaries the suite is skipped, except in CI.
  if (!(err instanceof PgClusterError && err.code === 'ENOPGBIN') || process.env.CI === 'true') throw err
  t.test('replica suite', async (t) => { t.plan(0, `skipped: ${err.message}`) })
}
