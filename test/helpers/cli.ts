/**
 * Running the `fastify-token-auth` CLI: in this process (`main(argv, io)` with its own streams, as the
 * bin does) or as a process of its own (`node --import tsx lib/cli/bin.ts ...`), and the end-to-end
 * story shared by test/cli.test.ts (PostgreSQL) and test/cli-embedded.test.ts (PGlite): results are
 * checked in the database and through the plugin (a token the CLI printed must open a protected
 * route, a revoked one must not).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import type { Test } from 'tap'
import { main } from '../../lib/cli/main.js'
import tokenAuth from '../../lib/index.js'
import type { Database } from '../../lib/store/database.js'
import { TokenService } from '../../lib/store/service.js'
import { childEnv } from './child-env.js'

const CLI = fileURLToPath(new URL('../../lib/cli/bin.ts', import.meta.url))
const TSX = createRequire(import.meta.url).resolve('tsx')
export const TOKEN_RE = /^tat_[0-9A-Za-z]{36}$/

export interface Result { code: number | null, stdout: string, stderr: string }

export interface RunOptions {
  env: Record<string, string | undefined>
  cwd: string
  /** Written to stdin, which is then closed (default: closed at once, no input). */
  input?: string
}

/** Runs the CLI in its own process; never inherits DATABASE_URL or TOKEN_AUTH_DATA_DIR by accident. */
export function cli (args: string[], opts: RunOptions): Promise<Result> {
  const env: NodeJS.ProcessEnv = { ...childEnv(), DATABASE_URL: undefined, TOKEN_AUTH_DATA_DIR: undefined, ...opts.env }
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(opts.input ?? '')
  })
}

/** Runs the CLI's main() in this process with its own stdin, stdout, stderr, environment and directory. */
export async function cliInProcess (args: string[], opts: RunOptions): Promise<Result> {
  let stdout = ''
  let stderr = ''
  const sink = (append: (s: string) => void): Writable => new Writable({ write (chunk, _enc, cb) { append(String(chunk)); cb() } })
  const stdin = opts.input === undefined ? new PassThrough().end() : Readable.from([opts.input])
  const env: NodeJS.ProcessEnv = { ...opts.env }
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k]
  const code = await main(args, {
    stdin: stdin as unknown as NodeJS.ReadStream,
    stdout: sink((s) => { stdout += s }),
    stderr: sink((s) => { stderr += s }),
    env,
    cwd: opts.cwd
  })
  return { code, stdout, stderr }
}

export function tempDir (t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tat-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Where a scenario runs: how to spawn the CLI and how the test itself reaches the same database. */
export interface Target {
  run: (args: string[], input?: string) => Promise<Result>
  /** Runs fn on the database (for the embedded one: opened after the CLI exited, closed after). */
  withDatabase: <T>(fn: (database: Database) => Promise<T>) => Promise<T>
}

/** GET /me with the token on an app built with the plugin on that database (no cache). */
export async function whoami (target: Target, token: string): Promise<{ statusCode: number, body: Record<string, unknown> }> {
  return await target.withDatabase(async (database) => {
    const app = Fastify()
    try {
      await app.register(tokenAuth, { database, drizzle: { cache: false, lastUsedInterval: false }, routes: false })
      app.get('/me', { preHandler: app.auth }, async (req) => req.user)
      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
      return { statusCode: res.statusCode, body: res.json() }
    } finally {
      await app.close()
    }
  })
}

/** The same story on either database: every command, its output and its effect. */
export async function scenario (t: Test, target: Target): Promise<void> {
  const run = target.run
  let r = await run(['migrate'])
  t.equal(r.code, 0, 'migrate exits 0')
  t.match(r.stdout, /migrations applied/)

  r = await run(['user', 'create', 'Alice'], 'pass word\n')
  t.equal(r.code, 0, 'user create exits 0')
  t.match(r.stdout, /created user "alice"/, 'the stored (normalized) name is shown')
  t.notMatch(r.stdout + r.stderr, /pass word/, 'the password is not echoed')
  const verified = await target.withDatabase(async (database) => {
    const service = new TokenService(database)
    return [await service.verifyCredentials('alice', 'pass word'), await service.verifyCredentials('alice', 'pass word\n')]
  })
  t.match(verified[0], { username: 'alice' }, 'the password is the first line of stdin')
  t.equal(verified[1], null, 'without its line ending')

  r = await run(['user', 'create', 'ALICE'], 'other\n')
  t.equal(r.code, 1, 'duplicate user: exit 1')
  t.match(r.stderr, /user "alice" already exists/)
  t.equal(r.stdout, '')

  r = await run(['token', 'create', 'alice', '--name', 'laptop', '--scopes', 'read,write', '--expires-in', '3600'])
  t.equal(r.code, 0, 'token create exits 0')
  t.match(r.stdout, /^tat_[0-9A-Za-z]{36}\n$/, 'stdout is the token alone and a newline')
  t.equal(r.stderr, '', 'nothing on stderr')
  const token = r.stdout.trim()
  t.match(token, TOKEN_RE)
  const me = await whoami(target, token)
  t.equal(me.statusCode, 200, 'the printed token opens a protected route')
  t.match(me.body, { username: 'alice', scopes: ['read', 'write'] })

  r = await run(['token', 'list', 'alice'])
  t.equal(r.code, 0, 'token list exits 0')
  t.match(r.stdout, /^ID\s+NAME\s+TOKEN\s+SCOPES\s+CREATED\s+LAST USED\s+EXPIRES\n/, 'a table with a header')
  t.match(r.stdout, /laptop\s+tat_\w{4}\.\.\.\s+read,write/)
  t.notOk(r.stdout.includes(token.slice(0, 10)), 'the table holds no more than the visible prefix of the token')
  r = await run(['token', 'list', 'alice', '--json'])
  t.equal(r.code, 0)
  const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>
  t.equal(list.length, 1)
  t.same(Object.keys(list[0]).sort(), ['createdAt', 'expiresAt', 'hint', 'id', 'lastUsedAt', 'name', 'scopes'], 'no secret, no hash')
  t.match(list[0], { name: 'laptop', hint: token.slice(0, 8), scopes: ['read', 'write'], expiresAt: String })
  t.notOk(r.stdout.includes(token.slice(0, 10)), 'the JSON holds no more than the visible prefix of the token')
  const id = list[0].id as number

  r = await run(['token', 'revoke', String(id)])
  t.equal(r.code, 0, 'token revoke exits 0')
  t.match(r.stdout, `revoked token ${id}`)
  t.equal((await whoami(target, token)).statusCode, 401, 'a revoked token is refused')
  r = await run(['token', 'revoke', String(id)])
  t.equal(r.code, 1, 'revoking it again: exit 1')
  t.match(r.stderr, `no token with id ${id}`)

  r = await run(['token', 'create', 'alice', '--expires-in', '1'])
  t.equal(r.code, 0)
  const shortLived = r.stdout.trim()
  await new Promise((resolve) => setTimeout(resolve, 1100))
  r = await run(['token', 'prune'])
  t.equal(r.code, 0, 'token prune exits 0')
  t.match(r.stdout, /deleted 1 expired token\n/)
  t.equal((await whoami(target, shortLived)).statusCode, 401)

  // Log out everywhere, but one; a password change ends every session, unless asked not to.
  // One at a time: the embedded database opens in one process at a time.
  const made: string[] = []
  for (const name of ['keep', 'lose1', 'lose2']) made.push((await run(['token', 'create', 'alice', '--name', name])).stdout.trim())
  const [keep, lose1, lose2] = made
  const keepId = (JSON.parse((await run(['token', 'list', 'alice', '--json'])).stdout) as Array<{ id: number, name: string }>).find((x) => x.name === 'keep')!.id
  r = await run(['token', 'revoke-all', 'alice', '--except', String(keepId)])
  t.equal(r.code, 0, 'token revoke-all exits 0')
  t.equal(r.stdout, 'revoked 2 tokens\n')
  const codes: number[] = []
  for (const tok of [keep, lose1, lose2]) codes.push((await whoami(target, tok)).statusCode)
  t.same(codes, [200, 401, 401], 'all but --except revoked')
  r = await run(['user', 'password', 'alice', '--keep-tokens'], 'pass word\n')
  t.equal(r.stdout, 'changed the password of "alice"; revoked 0 tokens\n')
  t.equal((await whoami(target, keep)).statusCode, 200, '--keep-tokens keeps them')
  r = await run(['user', 'password', 'alice'], 'pass word\n')
  t.equal(r.stdout, 'changed the password of "alice"; revoked 1 token\n')
  t.equal((await whoami(target, keep)).statusCode, 401, 'a password change revokes the tokens')
  r = await run(['token', 'revoke-all', 'nobody'])
  t.equal(r.code, 1)
  t.match(r.stderr, /user "nobody" does not exist/)

  r = await run(['token', 'create', 'alice', '--name', 'phone'])
  const phone = r.stdout.trim()
  t.equal((await whoami(target, phone)).statusCode, 200)
  r = await run(['user', 'deactivate', 'alice'])
  t.equal(r.code, 0, 'user deactivate exits 0')
  t.match(r.stdout, /deactivated user "alice"; revoked 1 token\n/)
  t.equal((await whoami(target, phone)).statusCode, 401, 'deactivation revoked the token')
  r = await run(['token', 'list', 'alice', '--json'])
  t.same(JSON.parse(r.stdout), [], 'no token left')
  r = await run(['token', 'create', 'alice'])
  t.equal(r.code, 1, 'no token for a deactivated user')
  t.match(r.stderr, /user "alice" is deactivated/)
  t.equal(r.stdout, '')

  r = await run(['token', 'create', 'nobody'])
  t.equal(r.code, 1, 'unknown user: exit 1')
  t.match(r.stderr, /user "nobody" does not exist/)
  t.equal(r.stdout, '')

  r = await run(['user', 'password', 'alice'], 'new secret\n')
  t.equal(r.code, 0, 'user password exits 0')
  t.ok(await target.withDatabase(async (database) => await new TokenService(database).verifyCredentials('alice', 'new secret') === null),
    'the password is set (the user is inactive, so it does not log in)')
}
