/**
 * The `fastify-token-auth` command: argument parsing, the database, and what the user sees; the
 * commands themselves are in commands.ts. Importing this module runs nothing (bin.ts calls main).
 *
 * The database is PostgreSQL at DATABASE_URL, or else the embedded PGlite in ./.data (or --data-dir /
 * TOKEN_AUTH_DATA_DIR). Migrations: on the embedded database they are applied before every command (a
 * fresh ./.data just works). On PostgreSQL only `migrate` changes the schema: in production the
 * schema belongs to a deploy step, and the CLI may run with a role that has no DDL rights. A command
 * run before `migrate` says so instead of failing with "relation does not exist".
 *
 * Output: results on stdout (`token create` prints the token alone, so `TOKEN=$(...)` works),
 * messages and prompts on stderr. Exit status: 0 ok, 1 failure, 2 usage error.
 */
import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { createDatabase, type Database } from '../store/database.js'
import {
  EmbeddedDatabaseBusyError, InvalidTokenOptionsError, InvalidUsernameError, TokenServiceError
} from '../store/errors.js'
import { migrate } from '../store/migrate.js'
import { serviceOptions, TokenService, type UserRef } from '../store/service.js'
import { builtinUsers } from '../users/builtin.js'
import type { UserSource } from '../users/user-source.js'
import { PREFIX_RE } from '../store/token-format.js'
import { normalizeUsername } from '../store/usernames.js'
import { COMMANDS, parseUserId, type Values } from './commands.js'
import { loadConfig } from './config.js'
import { CliError, UsageError } from './errors.js'
import { readPassword } from './prompt.js'

const BIN = 'fastify-token-auth'

export const USAGE = `Usage: ${BIN} <command> [options]

Manage the users and tokens of fastify-token-auth's store.

Commands:
  migrate                         Create or update the tables (safe to run again)
  user create <username>          Create a user. The password is read from stdin: prompted
                                  without echo on a terminal, else the first line of the input
  user password <username>        Set a user's password (read like user create's) and revoke
                                  their tokens
      --keep-tokens                 keep them instead
  user deactivate <username>      Deactivate a user and revoke all their tokens
  token create <user>             Issue a token and print it, alone, on stdout
      --name <name>                 a name for the device or purpose
      --scopes <a,b,...>            scopes the token carries
      --expires-in <seconds>        lifetime in seconds (default: never expires)
      --prefix <prefix>             the token's prefix (default: the config's, or TOKEN_AUTH_PREFIX, or tat)
  token list <user> [--json]      List a user's tokens (id, name, hint, dates; no secrets)
  token revoke <id>               Revoke one token by id
  token revoke-all <user>         Revoke every token of a user ("log out everywhere")
      --except <id>                 but this one
  token prune                     Delete every expired token
  events [--user <user>] [--limit <n>] [--json]
                                  The latest events of the audit trail, newest first (when the
                                  server writes them: service.events.table), default 50

<user> is a login name (a username, or with the app's own users its login column, e.g. an
email); with --id, the user's id instead. The user commands are for the plugin's own users only.

Options:
  --config <file>     the app's token-auth config module (default export: the plugin's options,
                      of which the CLI uses \`service\`: prefix, password cost), or TOKEN_AUTH_CONFIG
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

/** Where the CLI reads and writes: the process's own by default; tests give their own. */
export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  stdin: NodeJS.ReadStream
  env: NodeJS.ProcessEnv
  /** Where ./.data and a relative --config are (default: the process's working directory). */
  cwd: string
}

const GLOBAL_OPTIONS = new Set(['help', 'version', 'data-dir', 'config'])

function parse (argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      'data-dir': { type: 'string' },
      config: { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'string' },
      'expires-in': { type: 'string' },
      json: { type: 'boolean' },
      id: { type: 'boolean' },
      prefix: { type: 'string' },
      'keep-tokens': { type: 'boolean' },
      except: { type: 'string' },
      user: { type: 'string' },
      limit: { type: 'string' }
    }
  })
}

/** The command named by the first positional words, and its arguments; UsageError otherwise. */
function findCommand (positionals: string[], values: Values, users: UserSource): { key: string, args: string[] } {
  if (positionals.length === 0) throw new UsageError('no command given')
  if (!['migrate', 'events', 'user', 'token'].includes(positionals[0])) throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}`)
  const words = positionals[0] === 'migrate' || positionals[0] === 'events' ? 1 : 2
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
  if (command.args[0] === 'user' && values.id !== true) users.normalizeLogin(args[0])
  if (command.args[0] === 'user' && values.id === true && users.idKind === 'number') parseUserId(args[0])
  if (typeof values.user === 'string' && values.id !== true) users.normalizeLogin(values.user)
  command.check?.(args, values)
  return { key, args }
}

async function openDatabase (env: NodeJS.ProcessEnv, cwd: string, dataDir: string | undefined): Promise<Database> {
  const url = env.DATABASE_URL
  if (url !== undefined && url !== '') {
    if (dataDir !== undefined) throw new UsageError('--data-dir is for the embedded database, but DATABASE_URL is set')
    return await createDatabase(url, { max: 2 })
  }
  const dir = dataDir ?? (env.TOKEN_AUTH_DATA_DIR === '' || env.TOKEN_AUTH_DATA_DIR === undefined ? '.data' : env.TOKEN_AUTH_DATA_DIR)
  const database = await createDatabase(undefined, { dataDir: path.resolve(cwd, dir) })
  try {
    await migrate(database)
  } catch (err) {
    await database.close()
    throw err
  }
  return database
}

/** Drizzle wraps driver errors in "Failed query: <sql> params: <values>": show the driver's message. */
function rootCause (err: unknown): unknown {
  let e = err
  for (let i = 0; i < 5 && e instanceof DrizzleQueryError && e.cause !== undefined; i++) e = e.cause
  return e
}

/** What to print for an error, and the exit status. */
export function report (err: unknown): { message: string, code: number, usage: boolean } {
  if (err instanceof UsageError) return { message: err.message, code: 2, usage: true }
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return { message: (err as Error).message, code: 2, usage: true }
  if (err instanceof InvalidUsernameError || err instanceof InvalidTokenOptionsError) return { message: err.message, code: 2, usage: false }
  if (err instanceof CliError) return { message: err.message, code: err.exitCode, usage: false }
  // A bad option in the config module.
  if (code === 'FST_TOKEN_AUTH_INVALID_OPTION') return { message: `config: ${(err as Error).message.replace(/^fastify-token-auth: /, '')}`, code: 2, usage: false }
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
  if (err instanceof TokenServiceError) return { message: err.message, code: 1, usage: false }
  const cause = rootCause(err)
  const pgCode = (cause as { code?: unknown })?.code
  if (pgCode === '42P01') return { message: `the tables do not exist yet: run \`${BIN} migrate\` first`, code: 1, usage: false }
  const message = cause instanceof Error ? cause.message : String(cause)
  return { message: `${message}${typeof pgCode === 'string' ? ` (${pgCode})` : ''}`, code: 1, usage: false }
}

function version (): string {
  // lib/cli/main.ts (tsx) and dist/cli/main.js alike sit two levels below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** Runs one command line; resolves to the exit status. */
export async function main (argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const { stdout = process.stdout, stderr = process.stderr, stdin = process.stdin, env = process.env, cwd = process.cwd() } = io
  const out = (line: string): void => { stdout.write(line + '\n') }
  const err = (line: string): void => { stderr.write(line + '\n') }
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
    const config = await loadConfig(values.config ?? env.TOKEN_AUTH_CONFIG, cwd)
    const prefix = values.prefix ?? (env.TOKEN_AUTH_PREFIX === '' ? undefined : env.TOKEN_AUTH_PREFIX)
    if (prefix !== undefined && !PREFIX_RE.test(prefix)) {
      throw new UsageError(`--prefix (or TOKEN_AUTH_PREFIX) must be a token prefix, a lowercase letter then up to 15 lowercase letters or digits, got ${JSON.stringify(prefix)}`)
    }
    const options = serviceOptions({ ...config.service, ...(prefix === undefined ? {} : { prefix }) }, 'service')
    const users = options.users ?? builtinUsers
    const { key, args } = findCommand(positionals, values, users)
    database = await openDatabase(env, cwd, values['data-dir'])
    const service = new TokenService(database, options)
    const user = (arg: string): UserRef => values.id === true ? { id: users.idKind === 'number' ? parseUserId(arg) : arg } : arg
    try {
      await COMMANDS[key].run({ service, database, out, user, readPassword: (username) => readPassword(stdin, stderr, username, BIN) }, args, values)
    } finally {
      await service.events.close() // the events of this command, into the table when it is on
    }
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
