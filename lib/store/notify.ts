// Revocations travel to every process's cache on a PostgreSQL NOTIFY channel: the hashes of the
// deleted tokens, comma-joined, in payloads under PostgreSQL's 8000-byte limit.
import { sql } from 'drizzle-orm'
import { invalid } from '../validate.js'

export const DEFAULT_NOTIFY_CHANNEL = 'token_auth_revoked'
/** Largest NOTIFY payload sent, in bytes (PostgreSQL's limit is 8000). */
export const NOTIFY_PAYLOAD_MAX_BYTES = 7900
/** A channel is a lowercase SQL identifier, so LISTEN and pg_notify agree on its name. */
export const CHANNEL_RE = /^[a-z_][a-z0-9_]{0,62}$/

/** Splits hashes into comma-joined payloads of at most `maxBytes` bytes each. */
export function chunkPayloads (hashes: readonly string[], maxBytes = NOTIFY_PAYLOAD_MAX_BYTES): string[] {
  const out: string[] = []
  let current = ''
  let bytes = 0
  for (const h of hashes) {
    const len = Buffer.byteLength(h)
    if (current !== '' && bytes + 1 + len > maxBytes) {
      out.push(current)
      current = ''
      bytes = 0
    }
    current = current === '' ? h : current + ',' + h
    bytes += current === h ? len : 1 + len
  }
  if (current !== '') out.push(current)
  return out
}

/** One `select pg_notify(...)` statement for all the chunks; ≤ 5000 hashes → a few dozen parameters. */
export function notifyStatement (channel: string, hashes: readonly string[]) {
  const calls = sql.join(chunkPayloads(hashes).map((p) => sql`pg_notify(${channel}, ${p})`), sql`, `)
  return sql`select ${calls}`
}

/** Throws FST_TOKEN_AUTH_INVALID_OPTION unless `channel` is a lowercase SQL identifier. Returns it. */
export function validateChannel (channel: string): string {
  if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) invalid('channel', 'a NOTIFY channel: lowercase letters, digits and _, at most 63', channel)
  return channel
}
