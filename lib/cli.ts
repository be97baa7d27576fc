#!/usr/bin/env node
/**
 * The `fastify-token-auth` command: manage the store's users and tokens from a shell.
 *
 * Argument parsing and terminal IO only; every read and write of the tables goes through
 * TokenService (store/service.ts). The database is PostgreSQL at DATABASE_URL, or else the embedded
 * PGlite in ./.data (or --data-dir / TOKEN_AUTH_DATA_DIR).
 *
 * Migrations: on the embedded database they are applied before every command (a fresh ./.data just
 * works). On PostgreSQL only `migrate` changes the schema: in production the schema belongs to a
 * deploy step, and the CLI may run with a role that has no DDL rights. A command run before
 * `migrate` says so instead of failing with "relation does not exist".
 *
 * Output: results on stdout (`token create` prints the token alone, so `TOKEN=$(...)` works),
 * messages and prompts on stderr. Exit status: 0 ok, 1 failure, 2 usage error.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { createDatabase, EmbeddedDatabaseBusyError, migrate, type Database } from './store/database.js'
import { InvalidPasswordError } from './store/passwords.js'
import { InvalidUsernameError, normalizeUsername } from './store/schema.js'
import {
  InvalidTokenOptionsError, MAX_EXPIRES_IN, TokenService, TokenServiceError, UserExistsError, UserNotFoundError, type TokenInfo
} from './store/service.js'

const BIN = 'fastify-token-auth'

export const USAGE = `Usage: ${BIN} <command> [options]

Manage the users and tokens of fastify-token-auth's store.

Commands:
  migrate                         Create or update the tables (safe to run again)
  user create <username>          Create a user. The password is read from stdin: prompted
                                  without echo on a terminal, else the first line of the input
  user password <username>        Set a user's password (read like user create's)
  user deactivate <username>      Deactivate a user and revoke all their tokens
  token create <username>         Issue a token and print it, alone, on stdout
      --name <name>                 a name for the device or purpose
      --scopes <a,b,...>            scopes the token carries
      --expires-in <seconds>        lifetime in seconds (default: never expires)
  token list <username> [--json]  List a user's tokens (id, name, visible prefix, dates; no secrets)
  token revoke <id>               Revoke one token by id
  token prune                     Delete every expired token

Options:
  --data-dir <dir>    the embedded database's directory (default ./.data, or TOKEN_AUTH_DATA_DIR)
  -h, --help          show this help
  -v, --version       print the version

Database:
  DATABASE_URL set    PostgreSQL at that URL. Run \`migrate\` once, and after each upgrade;
                      the other commands never change the schema.
  DATABASE_URL unset  the embedded database (PGlite) in ./.data, migrated automatically.
                      Only one process at a time can open it: stop the server first.

Exit status: 0 ok, 1 failure (unknown or duplicate user, database error or busy), 2 usage error.

Examples:
  ${BIN} user create alice                       (asks for the password)
  printf '%s\\n' "$PASSWORD" | ${BIN} user create alice
  TOKEN=$(${BIN} token create alice --name ci --scopes read,write --expires-in 86400)
  ${BIN} token list alice --json
`

/** A mistake in the command line: exit status 2, with a pointer to --help. */
class UsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** A failure whose message is already written for the user: exit status 1. */
class CliError extends Error {
  readonly exitCode: number
  constructor (message: string, exitCode = 1) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

type Parsed = ReturnType<typeof parse>

function parse (argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      'data-dir': { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'string' },
      'expires-in': { type: 'string' },
      json: { type: 'boolean' }
    }
  })
}

const GLOBAL_OPTIONS = new Set(['help', 'version', 'data-dir'])

interface Command {
  /** Positional arguments after the command words. */
  args: string[]
  /** Options this command takes, besides the global ones. */
  options: string[]
  run: (ctx: Context, args: string[], values: Parsed['values']) => Promise<void>
}

interface Context {
  service: TokenService
  database: Database
  out: (line: string) => void
  err: (line: string) => void
}

const COMMANDS: Record<string, Command> = {
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
    async run ({ service, out }, [username]) {
      // Checked before asking for a password, so nobody types one for nothing.
      if (await service.findUser(username) !== null) throw new UserExistsError(normalizeUsername(username))
      const password = await readPassword(username)
      const user = await service.createUser(username, password)
      out(`created user ${JSON.stringify(user.username)} (id ${user.id})`)
    }
  },
  'user password': {
    args: ['username'],
    options: [],
    async run ({ service, out }, [username]) {
      if (await service.findUser(username) === null) throw new UserNotFoundError(normalizeUsername(username))
      const password = await readPassword(username)
      await service.setPassword(username, password)
      out(`changed the password of ${JSON.stringify(normalizeUsername(username))} (existing tokens stay valid)`)
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
    args: ['username'],
    options: ['name', 'scopes', 'expires-in'],
    async run ({ service, out }, [username], values) {
      const issued = await service.issueToken(username, {
        name: values.name,
        scopes: values.scopes === undefined ? undefined : parseScopes(values.scopes),
        expiresIn: values['expires-in'] === undefined ? undefined : parseExpiresIn(values['expires-in'])
      })
      out(issued.token)
    }
  },
  'token list': {
    args: ['username'],
    options: ['json'],
    async run ({ service, out }, [username], values) {
      const list = await service.listTokens(username)
      out(values.json === true ? JSON.stringify(list.map(tokenJson), null, 2) : tokenTable(list))
    }
  },
  'token revoke': {
    args: ['id'],
    options: [],
    async run ({ service, out }, [idText]) {
      const id = parseId(idText)
      if (!await service.revokeToken(id)) throw new CliError(`no token with id ${id}`)
      out(`revoked token ${id}`)
    }
  },
  'token prune': {
    args: [],
    options: [],
    async run ({ service, out }) {
      const n = await service.pruneExpired()
      out(`deleted ${plural(n, 'expired token')}`)
    }
  }
}

function plural (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function describe (database: Database): string {
  return database.kind === 'pglite' ? `embedded database at ${database.dataDir ?? '(memory)'}` : 'PostgreSQL at DATABASE_URL'
}

function parseScopes (text: string): string[] {
  const scopes = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (scopes.length === 0) throw new UsageError('--scopes needs at least one scope, e.g. --scopes read,write')
  return scopes
}

function parseExpiresIn (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_EXPIRES_IN) {
    throw new UsageError(`--expires-in must be a whole number of seconds from 1 to ${MAX_EXPIRES_IN}, got ${JSON.stringify(text)}`)
  }
  return n
}

function parseId (text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`a token id is a positive whole number, got ${JSON.stringify(text)}`)
  return n
}

function isoDate (d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

function tokenJson (t: TokenInfo) {
  return {
    id: t.id,
    name: t.name,
    prefix: t.prefix,
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
      String(t.id), t.name === '' ? '-' : t.name, `${t.prefix}...`, t.scopes.length === 0 ? '-' : t.scopes.join(','),
      shortDate(t.createdAt, '-'), shortDate(t.lastUsedAt, 'never'), shortDate(t.expiresAt, 'never')
    ])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')).join('\n')
}

// ---- password input ---------------------------------------------------------------------------

const MAX_PASSWORD_INPUT = 64 * 1024

async function readPassword (username: string): Promise<string> {
  const stdin = process.stdin
  if (stdin.isTTY === true) {
    const first = await promptHidden(`Password for ${normalizeUsername(username)}: `)
    const second = await promptHidden('Repeat the password: ')
    if (first !== second) throw new CliError('the passwords do not match; nothing was changed')
    return first
  }
  const line = await readFirstLine(stdin)
  if (line === null) {
    throw new CliError(`expected the password on the first line of stdin, got nothing (e.g. printf '%s\\n' "$PASSWORD" | ${BIN} user create ${normalizeUsername(username)})`)
  }
  return line
}

/** The first line of a non-terminal stream (without its line ending), or null at once-empty EOF. */
async function readFirstLine (input: NodeJS.ReadableStream): Promise<string | null> {
  let text = ''
  let got = false
  input.setEncoding('utf8')
  for await (const chunk of input as AsyncIterable<string>) {
    got = true
    text += chunk
    const nl = text.indexOf('\n')
    if (nl >= 0) {
      text = text.slice(0, nl)
      break // ends the iteration and releases stdin
    }
    if (text.length > MAX_PASSWORD_INPUT) throw new CliError('the first line of stdin is too long to be a password')
  }
  return got ? text.replace(/\r$/, '') : null
}

/** Asks on the terminal with echo off (raw mode); Ctrl-C aborts, Backspace and Ctrl-U edit. */
function promptHidden (prompt: string): Promise<string> {
  const input = process.stdin
  process.stderr.write(prompt)
  input.setEncoding('utf8')
  input.setRawMode(true)
  input.resume()
  return new Promise((resolve, reject) => {
    let value = ''
    const finish = (): void => {
      input.removeListener('data', onData)
      input.setRawMode(false)
      input.pause()
      process.stderr.write('\n')
    }
    function onData (chunk: string): void {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || (ch === '\u0004' && value !== '')) {
          finish()
          resolve(value)
          return
        }
        if (ch === '\u0003' || ch === '\u0004') { // Ctrl-C, or Ctrl-D on an empty line
          finish()
          reject(new CliError('cancelled; nothing was changed', 130))
          return
        }
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('')
        else if (ch === '\u0015') value = '' // Ctrl-U
        else if (ch === '\u001b') break // an escape sequence (arrow keys...): drop the rest
        else if (ch >= ' ') value += ch
      }
    }
    input.on('data', onData)
  })
}

// ---- database ---------------------------------------------------------------------------------

async function openDatabase (dataDir: string | undefined): Promise<Database> {
  const url = process.env.DATABASE_URL
  if (url !== undefined && url !== '') {
    if (dataDir !== undefined) throw new UsageError('--data-dir is for the embedded database, but DATABASE_URL is set')
    return await createDatabase(url, { max: 2 })
  }
  const dir = dataDir ?? (process.env.TOKEN_AUTH_DATA_DIR === '' ? undefined : process.env.TOKEN_AUTH_DATA_DIR)
  const database = await createDatabase(undefined, { dataDir: dir })
  try {
    await migrate(database)
  } catch (err) {
    await database.close()
    throw err
  }
  return database
}

// ---- errors -----------------------------------------------------------------------------------

/** Drizzle wraps driver errors in "Failed query: <sql> params: <values>": show the driver's message. */
function rootCause (err: unknown): unknown {
  let e = err
  for (let i = 0; i < 5 && e instanceof DrizzleQueryError && e.cause !== undefined; i++) e = e.cause
  return e
}

function report (err: unknown): { message: string, code: number, usage: boolean } {
  if (err instanceof UsageError) return { message: err.message, code: 2, usage: true }
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return { message: (err as Error).message, code: 2, usage: true }
  if (err instanceof InvalidUsernameError || err instanceof InvalidTokenOptionsError) {
    return { message: err.message, code: 2, usage: false }
  }
  if (err instanceof CliError) return { message: err.message, code: err.exitCode, usage: false }
  if (err instanceof TokenServiceError || err instanceof InvalidPasswordError) return { message: err.message, code: 1, usage: false }
  if (err instanceof EmbeddedDatabaseBusyError) {
    return {
      message: `the embedded database (${err.dataDir}) is in use by another process${err.pid === undefined ? '' : ` (pid ${err.pid})`}, ` +
        'probably the server started with `npm start`.\n' +
        'Only one process can open it at a time: stop the server (Ctrl-C), run this command again, then start the server again.\n' +
        'Or set DATABASE_URL to use a PostgreSQL server, which the CLI and the server can share.',
      code: 1,
      usage: false
    }
  }
  const cause = rootCause(err)
  const pgCode = (cause as { code?: unknown })?.code
  if (pgCode === '42P01') {
    return { message: `the tables do not exist yet: run \`${BIN} migrate\` first`, code: 1, usage: false }
  }
  const message = cause instanceof Error ? cause.message : String(cause)
  return { message: `${message}${typeof pgCode === 'string' ? ` (${pgCode})` : ''}`, code: 1, usage: false }
}

function version (): string {
  // lib/cli.ts (tsx) and dist/cli.js alike sit one level below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

// ---- main -------------------------------------------------------------------------------------

/** Runs one command line; resolves to the exit status. */
export async function main (argv: string[]): Promise<number> {
  const out = (line: string): void => { process.stdout.write(line + '\n') }
  const err = (line: string): void => { process.stderr.write(line + '\n') }
  let database: Database | undefined
  try {
    const { values, positionals } = parse(argv)
    if (values.help === true || positionals[0] === 'help') {
      out(USAGE.trimEnd())
      return 0
    }
    if (values.version === true) {
      out(version())
      return 0
    }
    if (positionals.length === 0) throw new UsageError('no command given')
    if (!['migrate', 'user', 'token'].includes(positionals[0])) throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}`)
    const words = positionals[0] === 'migrate' ? 1 : 2
    const key = positionals.slice(0, words).join(' ')
    const command = COMMANDS[key]
    if (command === undefined) {
      throw new UsageError(words === 2 && positionals.length < 2 ? `"${positionals[0]}" needs a subcommand` : `unknown command "${key}"`)
    }
    const args = positionals.slice(words)
    if (args.length < command.args.length) throw new UsageError(`${key}: missing <${command.args[args.length]}>`)
    if (args.length > command.args.length) throw new UsageError(`${key}: unexpected argument ${JSON.stringify(args[command.args.length])}`)
    for (const name of Object.keys(values)) {
      if (!GLOBAL_OPTIONS.has(name) && !command.options.includes(name)) throw new UsageError(`${key} does not take --${name}`)
    }
    // Validate what can be validated before touching the database.
    if (command.args[0] === 'username') normalizeUsername(args[0])
    if (values['expires-in'] !== undefined) parseExpiresIn(values['expires-in'])
    if (values.scopes !== undefined) parseScopes(values.scopes)
    if (key === 'token revoke') parseId(args[0])

    database = await openDatabase(values['data-dir'])
    await command.run({ service: new TokenService(database), database, out, err }, args, values)
    return 0
  } catch (e) {
    const { message, code, usage } = report(e)
    err(`${BIN}: ${message}`)
    if (usage) err(`Run \`${BIN} --help\` for usage.`)
    return code
  } finally {
    await database?.close().catch((e: unknown) => { err(`${BIN}: closing the database failed: ${(e as Error).message}`) })
  }
}

process.exitCode = await main(process.argv.slice(2))
