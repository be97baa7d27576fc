/**
 * The bench's database: a fresh PostgreSQL database (default `token_auth_bench`) on the server of
 * the admin URL, migrated with lib's `migrate`, one user with the default scrypt parameters, one real
 * token, and optionally N filler token rows inserted with one `INSERT ... SELECT generate_series`.
 * Filler rows carry md5-based fake hashes (64 hex characters, the same width as a SHA-256): they only
 * have to fill the index, nobody presents them.
 */
import postgres from 'postgres'
import { createDatabase } from '../lib/store/database.js'
import { migrate } from '../lib/store/migrate.js'
import { TokenService } from '../lib/store/service.js'
import { generateToken, hashToken } from '../lib/store/token-format.js'

export interface BenchDatabase {
  url: string
  name: string
  username: string
  password: string
  /** A real token of the bench user (resolves), issued through TokenService. */
  token: string
  /** `pool` real tokens (token first): the loader picks one at random per request, so a cold cache
   * really asks the database each time (requests for one token in flight together share a query). */
  tokens: string[]
  /** `pool` well-formed tokens with valid checksums, not in the table. */
  unknownTokens: string[]
  /** The real tokens with their last checksum character changed. */
  badChecksumTokens: string[]
  /** Rows in token_auth_tokens. */
  rows: number
  seedMs: number
  /** Drops the database (unless `keep`) and ends the admin connection. */
  drop: (keep?: boolean) => Promise<void>
}

export interface SeedOptions {
  adminUrl: string
  name?: string
  /** Filler token rows to add (besides the real ones). */
  tokens?: number
  /** Real tokens (and unknown ones) the loader rotates through. Default 1000. */
  pool?: number
}

export async function seedBenchDatabase (opts: SeedOptions): Promise<BenchDatabase> {
  const name = opts.name ?? 'token_auth_bench'
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new TypeError(`bad database name ${name}`)
  const admin = postgres(opts.adminUrl, { max: 1, onnotice: () => {} })
  const started = Date.now()
  await admin.unsafe(`drop database if exists "${name}" with (force)`)
  await admin.unsafe(`create database "${name}"`)
  const u = new URL(opts.adminUrl)
  u.pathname = `/${name}`
  const url = u.toString()
  const database = await createDatabase(url, { max: 2 })
  try {
    await migrate(database)
    const service = new TokenService(database) // default scrypt parameters: the login flood uses them
    const username = 'bench'
    const password = 'correct horse battery staple'
    const user = await service.createUser(username, password)
    const { token } = await service.issueToken(user.id, { name: 'bench' })
    const pool = opts.pool ?? 1000
    const more = Array.from({ length: pool - 1 }, () => generateToken())
    await (database.sql as postgres.Sql).unsafe(
      `insert into token_auth_tokens (user_id, token_hash, hint, name)
       select $1, h, 'tat_pool', 'bench pool' from unnest($2::text[]) as h`,
      // An array literal (hex strings need no quoting): createDatabase turns postgres.js's type
      // fetching off, so it would not serialize a JS array as text[].
      [user.id, `{${more.map(hashToken).join(',')}}`])
    const tokens = [token, ...more]
    const filler = opts.tokens ?? 0
    if (filler > 0) {
      const sql = database.sql as postgres.Sql
      // Chunks of 250k keep each statement's WAL and memory moderate; still one statement per chunk.
      for (let from = 1; from <= filler; from += 250_000) {
        const to = Math.min(filler, from + 249_999)
        await sql.unsafe(
          `insert into token_auth_tokens (user_id, token_hash, hint, name)
           select $1, md5(i::text) || md5('filler' || i::text), 'tat_fill', 'filler'
           from generate_series($2::int, $3::int) as i`, [user.id, from, to])
      }
    }
    await (database.sql as postgres.Sql).unsafe('analyze token_auth_users, token_auth_tokens')
    const [{ n }] = await (database.sql as postgres.Sql).unsafe('select count(*)::int as n from token_auth_tokens')
    const known = new Set(tokens)
    const unknownTokens: string[] = []
    while (unknownTokens.length < pool) {
      const t = generateToken()
      if (!known.has(t)) unknownTokens.push(t)
    }
    const badChecksumTokens = tokens.map((t) => t.slice(0, -1) + (t.at(-1) === 'A' ? 'B' : 'A'))
    return {
      url,
      name,
      username,
      password,
      token,
      tokens,
      unknownTokens,
      badChecksumTokens,
      rows: n as number,
      seedMs: Date.now() - started,
      drop: async (keep = false) => {
        if (!keep) await admin.unsafe(`drop database if exists "${name}" with (force)`)
        await admin.end({ timeout: 5 })
      }
    }
  } catch (err) {
    await admin.end({ timeout: 5 })
    throw err
  } finally {
    await database.close()
  }
}
