// Scale (issue 4, item 5): with about a million tokens in the table, the lookup the database provider
// runs is an Index Scan on the token_hash unique index, never a Seq Scan, and a real token still
// resolves. The SQL checked is the provider's own: it is captured from the provider through a Drizzle
// logger on the same connection pool, not rebuilt here.
import t, { type Test } from 'tap'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import type { Logger } from 'drizzle-orm'
import * as schema from '../lib/store/schema.js'
import type { TokenAuthDatabase } from '../lib/store/database.js'
import { DrizzleTokenAuthProvider } from '../lib/providers/drizzle.js'
import { generateToken, hashToken } from '../lib/store/token-format.js'
import { freshDatabase, type FreshDatabase } from './helpers/db.js'

const TOKEN_INDEX = 'token_auth_tokens_token_hash_unique'

// PostgreSQL: a million rows (about 5 s: the fake hashes increase with i, so the unique index is
// filled from its right edge). PGlite is one WebAssembly process: fewer rows, same plan check.
const ROWS_POSTGRES = Number(process.env.SCALE_TOKENS ?? 1_000_000)
const ROWS_PGLITE = 50_000

type PlanNode = { 'Node Type': string, 'Relation Name'?: string, 'Index Name'?: string, Plans?: PlanNode[] }

async function run (fresh: FreshDatabase, text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const { database } = fresh
  if (database.sql !== undefined) return [...await database.sql.unsafe(text, params as never[])]
  if (database.pglite !== undefined) return (await database.pglite.query<Record<string, unknown>>(text, params)).rows
  throw new Error('unknown database kind')
}

function nodes (plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)]
}

function planOf (rows: Array<Record<string, unknown>>): PlanNode {
  let json = rows[0]['QUERY PLAN']
  if (typeof json === 'string') json = JSON.parse(json)
  return (json as Array<{ Plan: PlanNode }>)[0].Plan
}

function assertTokenIndexScan (t: Test, plan: PlanNode, what: string): void {
  const onTokens = nodes(plan).filter((n) => n['Relation Name'] === 'token_auth_tokens')
  t.equal(onTokens.length, 1, `${what}: token_auth_tokens is read once`)
  t.match(onTokens[0], { 'Node Type': /^Index (Only )?Scan$/, 'Index Name': TOKEN_INDEX },
    `${what}: ${onTokens[0]?.['Node Type']} on ${onTokens[0]?.['Index Name'] ?? 'no index'}`)
  t.notOk(nodes(plan).some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'token_auth_tokens'), `${what}: no Seq Scan on token_auth_tokens`)
}

t.test('a million tokens: the provider\'s lookup is an index scan on token_hash', async (t) => {
  const fresh = await freshDatabase(t)
  const { database, service } = fresh
  const rows = database.kind === 'postgres' ? ROWS_POSTGRES : ROWS_PGLITE

  const user = await service.createUser('scale', 'a password')
  const issued = await service.issueToken(user.id, { name: 'real', scopes: ['read'] })
  const started = Date.now()
  // One statement. The filler hashes are 64 hex characters like a SHA-256, but nobody presents them.
  const insert = `insert into token_auth_tokens (user_id, token_hash, hint, name)
    select $1::bigint, 'f' || lpad(to_hex(i), 63, '0'), 'tat_fill', 'filler' from generate_series(1, $2::int) as i`
  if (database.sql !== undefined) {
    // All rows belong to an existing user: skip the per-row foreign-key trigger, which costs more than the insert itself.
    await database.sql.begin(async (tx) => {
      await tx.unsafe('set local session_replication_role = replica')
      await tx.unsafe(insert, [user.id, rows])
    })
  } else {
    await run(fresh, insert, [user.id, rows])
  }
  await run(fresh, 'analyze token_auth_users, token_auth_tokens')
  const [{ n }] = await run(fresh, 'select count(*)::int as n from token_auth_tokens')
  t.equal(n, rows + 1, `${rows.toLocaleString('en-US')} filler rows seeded in ${Date.now() - started} ms`)

  // The provider on a Drizzle database sharing the pool, with a logger that captures its SQL.
  const captured: Array<{ query: string, params: unknown[] }> = []
  const logger: Logger = { logQuery: (query, params) => { captured.push({ query, params }) } }
  const db = (database.sql !== undefined
    ? drizzlePostgres(database.sql, { schema, logger })
    : drizzlePglite(database.pglite as never, { schema, logger })) as unknown as TokenAuthDatabase
  const provider = new DrizzleTokenAuthProvider({ db, cache: false, lastUsedInterval: false })
  t.teardown(() => provider.close())

  t.match(await provider.getUser(issued.token), { id: user.id, username: 'scale', tokenId: issued.id, scopes: ['read'] },
    `a real token resolves among ${(rows + 1).toLocaleString('en-US')}`)
  t.equal(await provider.getUser(generateToken()), null, 'an unknown well-formed token does not')

  const lookups = captured.filter((q) => q.params.includes(hashToken(issued.token)))
  t.equal(lookups.length, 1, 'the provider ran one query for the real token')
  const { query, params } = lookups[0]
  t.match(query, /"token_auth_tokens"\."token_hash" = \$1/, 'it compares token_hash with a parameter')

  // The plan for these parameter values (what the first executions of the prepared statement get).
  assertTokenIndexScan(t, planOf(await run(fresh, `explain (format json) ${query}`, params)), 'custom plan')

  // The generic plan, which PostgreSQL may switch a prepared statement to after five executions.
  // One session (a reserved connection on postgres.js; PGlite has only one).
  const reserved = database.sql !== undefined ? await database.sql.reserve() : undefined
  const session = async (text: string): Promise<Array<Record<string, unknown>>> =>
    reserved !== undefined ? [...await reserved.unsafe(text)] : await run(fresh, text)
  try {
    await session('set plan_cache_mode = force_generic_plan')
    await session(`prepare token_lookup_check as ${query}`)
    // EXECUTE's arguments are values, not bind parameters: the hash (hex) and the limit, as literals.
    const literals = params.map((p) => typeof p === 'number' ? String(p) : `'${String(p).replaceAll("'", "''")}'`).join(', ')
    assertTokenIndexScan(t, planOf(await session(`explain (format json) execute token_lookup_check(${literals})`)), 'generic plan')
    await session('deallocate token_lookup_check')
    await session('reset plan_cache_mode')

    // Several tokens asked at once (lookup-batch.ts) share one `= any($1)` query: an index scan too.
    const second = await service.issueToken((await service.createUser('scale2', 'a password')).id, { name: 'second' })
    const answers = await Promise.all([provider.getUser(issued.token), provider.getUser(second.token), provider.getUser(generateToken())])
    t.same(answers.map((a) => a?.tokenId ?? null), [issued.id, second.id, null], 'three tokens asked at once: the two real ones found')
    const batched = captured.filter((q) => /token_hash" = any\(/.test(q.query))
    t.equal(batched.length, 1, 'the three were asked in one query')
    assertTokenIndexScan(t, planOf(await run(fresh, `explain (format json) ${batched[0].query}`, batched[0].params)), 'batched, custom plan')
    await session('set plan_cache_mode = force_generic_plan')
    await session(`prepare token_batch_check as ${batched[0].query}`)
    assertTokenIndexScan(t, planOf(await session(`explain (format json) execute token_batch_check('${String(batched[0].params[0])}')`)), 'batched, generic plan')
    await session('deallocate token_batch_check')
    await session('reset plan_cache_mode')
  } finally {
    reserved?.release()
  }
})
