/**
 * The CLI's commands: a table of small functions, each given the service, the database and where to
 * write, so each can be run (and tested) in process. Every read and write goes through TokenService.
 */
import { CONTROL_CHARS_GLOBAL, printable } from '../grammar.js'
import { migrate } from '../store/migrate.js'
import type { Database } from '../store/database.js'
import { UserExistsError, UserNotFoundError } from '../store/errors.js'
import { MAX_EXPIRES_IN, type StoredEvent, type TokenInfo, type TokenService, type UserRef } from '../store/service.js'
import { normalizeUsername } from '../store/usernames.js'
import { CliError, UsageError } from './errors.js'

export interface Context {
  service: TokenService
  /** The `<user>` argument as the service takes it: a login name, or with --id, an id. */
  user: (arg: string) => UserRef
  database: Database
  out: (line: string) => void
  /** Reads the password for a user (a prompt on a terminal, else the first line of stdin). */
  readPassword: (username: string) => Promise<string>
}

export type Values = Record<string, string | boolean | undefined>

export interface Command {
  /** Positional arguments after the command words. */
  args: readonly string[]
  /** Options this command takes, besides the global ones. */
  options: readonly string[]
  /** Checks what can be checked before the database is opened (throws UsageError). */
  check?: (args: string[], values: Values) => void
  run: (ctx: Context, args: string[], values: Values) => Promise<void>
}

export const COMMANDS: Readonly<Record<string, Command>> = {
  migrate: {
    args: [],
    options: [],
    async run ({ database, out }) {
      await migrate(database)
      out(`migrations applied (${describe(database)})`)
    }
  },
  'user create': {
    args: ['username'],
    options: [],
    async run ({ service, out, readPassword }, [username]) {
      // Checked before asking for a password, so nobody types one for nothing.
      if (await service.findUser(username) !== null) throw new UserExistsError(normalizeUsername(username))
      const password = await readPassword(username)
      const user = await service.createUser(username, password)
      out(`created user ${JSON.stringify(user.username)} (id ${user.id})`)
    }
  },
  'user password': {
    args: ['username'],
    options: ['keep-tokens'],
    async run ({ service, out, readPassword }, [username], values) {
      if (await service.findUser(username) === null) throw new UserNotFoundError(normalizeUsername(username))
      const password = await readPassword(username)
      const { revoked } = await service.setPassword(username, password, { keepTokens: values['keep-tokens'] === true })
      const name = JSON.stringify(normalizeUsername(username))
      out(`changed the password of ${name}; revoked ${plural(revoked, 'token')}`)
    }
  },
  'user deactivate': {
    args: ['username'],
    options: [],
    async run ({ service, out }, [username]) {
      const { revoked } = await service.deactivateUser(username)
      out(`deactivated user ${JSON.stringify(normalizeUsername(username))}; revoked ${plural(revoked, 'token')}`)
    }
  },
  'token create': {
    args: ['user'],
    options: ['name', 'scopes', 'expires-in', 'id', 'prefix'],
    check (_args, values) {
      if (values['expires-in'] !== undefined) parseExpiresIn(values['expires-in'] as string)
      if (values.scopes !== undefined) parseScopes(values.scopes as string)
    },
    async run ({ service, out, user }, [arg], values) {
      const issued = await service.issueToken(user(arg), {
        name: values.name as string | undefined,
        scopes: values.scopes === undefined ? undefined : parseScopes(values.scopes as string),
        expiresIn: values['expires-in'] === undefined ? undefined : parseExpiresIn(values['expires-in'] as string)
      })
      out(issued.token)
    }
  },
  'token list': {
    args: ['user'],
    options: ['json', 'id'],
    async run ({ service, out, user }, [arg], values) {
      const list = await service.listTokens(user(arg))
      out(values.json === true ? safeJson(list.map(tokenJson)) : tokenTable(list))
    }
  },
  'token revoke': {
    args: ['id'],
    options: [],
    check ([id]) { parseId(id) },
    async run ({ service, out }, [idText]) {
      const id = parseId(idText)
      if (!await service.revokeToken(id)) throw new CliError(`no token with id ${id}`)
      out(`revoked token ${id}`)
    }
  },
  'token revoke-all': {
    args: ['user'],
    options: ['except', 'id'],
    check (_args, values) { if (values.except !== undefined) parseId(values.except as string) },
    async run ({ service, out, user }, [arg], values) {
      const ref = user(arg)
      if (await service.findUser(ref) === null) throw new UserNotFoundError(typeof ref === 'object' && 'id' in ref ? ref.id : arg)
      const except = values.except === undefined ? undefined : parseId(values.except as string)
      const n = await service.revokeAllTokens(ref, { except })
      out(`revoked ${plural(n, 'token')}`)
    }
  },
  'token prune': {
    args: [],
    options: [],
    async run ({ service, out }) {
      const n = await service.pruneExpired()
      out(`deleted ${plural(n, 'expired token')}`)
    }
  },
  events: {
    args: [],
    options: ['user', 'limit', 'json', 'id'],
    check (_args, values) { if (values.limit !== undefined) parseLimit(values.limit as string) },
    async run ({ service, out, user }, _args, values) {
      let userId: string | undefined
      if (typeof values.user === 'string') {
        const found = await service.findUser(user(values.user))
        if (found === null) throw new UserNotFoundError(values.user)
        userId = String(found.id)
      }
      const list = await service.listEvents({ userId, limit: values.limit === undefined ? 50 : parseLimit(values.limit as string) })
      out(values.json === true ? safeJson(list) : eventTable(list))
    }
  }
}

function parseLimit (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new UsageError(`--limit must be a whole number from 1 to 10000, got ${JSON.stringify(text)}`)
  return n
}

function eventTable (list: readonly StoredEvent[]): string {
  if (list.length === 0) return '(no events: the server writes them with service.events.table)'
  const rows = [['AT', 'EVENT', 'USER', 'TOKEN', 'ADDRESS', 'DETAIL']]
  for (const e of list) {
    rows.push([shortDate(e.at, '-'), e.type, printable(e.userId ?? '-'), e.tokenId === null ? '-' : String(e.tokenId), printable(e.ip ?? '-'), printable(JSON.stringify(e.detail))])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')).join('\n')
}

function plural (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function describe (database: Database): string {
  return database.kind === 'pglite' ? `embedded database at ${database.dataDir ?? '(memory)'}` : 'PostgreSQL at DATABASE_URL'
}

export function parseScopes (text: string): string[] {
  const scopes = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (scopes.length === 0) throw new UsageError('--scopes needs at least one scope, e.g. --scopes read,write')
  return scopes
}

export function parseExpiresIn (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_EXPIRES_IN) {
    throw new UsageError(`--expires-in must be a whole number of seconds from 1 to ${MAX_EXPIRES_IN}, got ${JSON.stringify(text)}`)
  }
  return n
}

export function parseUserId (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n)) throw new UsageError(`with --id, <user> is the user's id (a whole number here), got ${JSON.stringify(text)}`)
  return n
}

export function parseId (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`a token id is a positive whole number, got ${JSON.stringify(text)}`)
  return n
}

/** JSON with the characters a terminal would hide or reorder written as \u escapes (still valid JSON). */
function safeJson (value: unknown): string {
  // JSON.stringify escapes C0 controls in strings already; its own line breaks are left alone.
  return JSON.stringify(value, null, 2).replace(CONTROL_CHARS_GLOBAL, (c) => c === '\n'
    ? c
    : Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''))
}

function isoDate (d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

function tokenJson (t: TokenInfo) {
  return {
    id: t.id,
    name: t.name,
    hint: t.hint,
    scopes: t.scopes,
    createdAt: isoDate(t.createdAt),
    lastUsedAt: isoDate(t.lastUsedAt),
    expiresAt: isoDate(t.expiresAt)
  }
}

function shortDate (d: Date | null, none: string): string {
  return d === null ? none : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

function tokenTable (list: TokenInfo[]): string {
  if (list.length === 0) return '(no tokens)'
  const rows = [['ID', 'NAME', 'TOKEN', 'SCOPES', 'CREATED', 'LAST USED', 'EXPIRES']]
  for (const t of list) {
    rows.push([
      String(t.id), t.name === '' ? '-' : printable(t.name), `${printable(t.hint)}...`, t.scopes.length === 0 ? '-' : t.scopes.join(','),
      shortDate(t.createdAt, '-'), shortDate(t.lastUsedAt, 'never'), shortDate(t.expiresAt, 'never')
    ])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')).join('\n')
}
