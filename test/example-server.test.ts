// The example server (`npm start`): buildServer() in process, then example/server.ts as its own
// process on the embedded database in a temporary working directory: /health, the first-start admin
// password, the printed curl lines, /me, /logout, the CLI told the database is busy, logs free of
// credentials, graceful shutdown, and no password printed on the second start.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as path from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { buildServer, createFirstUser, loggerOptions } from '../example/app.js'
import postgres from 'postgres'
import { freshDatabase } from './helpers/db.js'
import { startCluster } from './helpers/pg-cluster.js'
import { cli, tempDir, TOKEN_RE } from './helpers/cli.js'
import { childEnv } from './helpers/child-env.js'

// Two server starts and a CLI run, each a process of its own: more than .taprc's 120 s on a loaded machine.
t.setTimeout(300_000)

const SERVER = fileURLToPath(new URL('../example/server.ts', import.meta.url))
const TSX = createRequire(import.meta.url).resolve('tsx')

t.test('buildServer: routes, first user, redacted logs', async (t) => {
  const { database, service } = await freshDatabase(t)
  let logs = ''
  const stream = new Writable({ write (chunk, _enc, cb) { logs += String(chunk); cb() } })
  const app = await buildServer({ database, logger: { ...loggerOptions, level: 'debug', stream }, service: { passwordParams: { ln: 10 } } })
  t.teardown(() => app.close())

  let res = await app.inject({ url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
  t.equal((await app.inject({ url: '/health', headers: { authorization: 'Bearer nonsense!' } })).statusCode, 200, '/health reads no token')
  res = await app.inject({ url: '/me' })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="api"')
  t.equal((await app.inject({ url: '/nope' })).statusCode, 401, 'every route needs a token (global mode), unknown ones too')
  res = await app.inject({ url: '/docs/' })
  t.equal(res.statusCode, 200, '/docs is public')
  t.match(res.headers['content-type'], /text\/html/)
  const doc = (await app.inject({ url: '/docs/json' })).json()
  t.same(doc.paths['/me'].get.security, [{ bearerAuth: [] }], 'the docs say /me takes the bearer token')
  t.same(doc.paths['/health'].get.security, [])
  t.match(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer' })

  const first = await createFirstUser(service)
  t.match(first, { username: 'admin', password: /^[A-Za-z0-9_-]{24}$/ })
  t.equal(await createFirstUser(service), null, 'only when there is no user at all')
  res = await app.inject({ method: 'POST', url: '/login', payload: { username: 'admin', password: first!.password } })
  t.equal(res.statusCode, 200, 'the generated password logs in')
  const token = res.json().token as string
  t.match(token, TOKEN_RE)
  res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { username: 'admin', scopes: [] })
  // Fastify's request serializer logs no header; a log call that adds the headers gets them redacted.
  app.log.info({ headers: { authorization: `Bearer ${token}`, 'user-agent': 'test' } }, 'a log call that carries the headers')

  t.notOk(logs.includes(token), 'the token is in no log line')
  t.notOk(logs.includes(first!.password), 'nor the password')
  t.match(logs, /"authorization":"\[redacted\]"/, 'the Authorization header is redacted when a log call carries it')

  await database.close()
  res = await app.inject({ url: '/health' })
  t.equal(res.statusCode, 503, '/health says when the database does not answer')
  t.same(res.json(), { status: 'unavailable' })
})

interface Server {
  child: ChildProcessWithoutNullStreams
  stdout: () => string
  stderr: () => string
  /** Resolves to the exit code once the process has ended. */
  exited: Promise<number | null>
}

function startServer (t: Test, cwd: string, extra: NodeJS.ProcessEnv = {}): Server {
  const env: NodeJS.ProcessEnv = { ...childEnv(), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' }
  delete env.DATABASE_URL
  delete env.TOKEN_AUTH_DATA_DIR
  Object.assign(env, extra)
  const child = spawn(process.execPath, ['--import', TSX, SERVER], { cwd, env })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** Waits until the server printed its banner (the last block ends with `--help`); returns stdout then. */
async function banner (server: Server, ms = 90_000): Promise<string> {
  const deadline = Date.now() + ms
  while (!/lib\/cli\/bin\.ts --help\n/.test(server.stdout())) {
    if (server.child.exitCode !== null) throw new Error(`the server exited (${server.child.exitCode}): ${server.stderr()}${server.stdout()}`)
    if (Date.now() > deadline) throw new Error(`no banner within ${ms} ms: ${server.stderr()}${server.stdout()}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return server.stdout()
}

async function stop (t: Test, server: Server): Promise<void> {
  server.child.kill('SIGTERM')
  const code = await Promise.race([server.exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 30_000))])
  t.equal(code, 0, 'SIGTERM: the server closes and exits 0')
}

t.test('npm start (example/server.ts) on the embedded database', async (t) => {
  const cwd = tempDir(t)
  const server = startServer(t, cwd)
  const out = await banner(server)

  const url = /example server on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]
  t.ok(url, 'the banner gives the address')
  const password = /created the user "admin" with the password\n\n {4}(\S+)\n/.exec(out)?.[1]
  t.match(password, /^[A-Za-z0-9_-]{24}$/, 'first start: the admin password is printed')
  t.ok(existsSync(path.join(cwd, '.data', 'PG_VERSION')), 'the embedded database is in ./.data of the working directory')

  let res = await fetch(`${url}/health`)
  t.equal(res.status, 200, 'GET /health answers 200 on the embedded database')
  t.same(await res.json(), { status: 'ok' })
  res = await fetch(`${url}/me`)
  t.equal(res.status, 401, '/me needs a token')

  res = await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'wrong' }) })
  t.equal(res.status, 401, 'a wrong password is refused')
  res = await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) })
  t.equal(res.status, 200, 'the printed password logs in')
  const token = ((await res.json()) as { token: string }).token
  t.match(token, TOKEN_RE)
  res = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(res.status, 200, '/me with the token')
  t.match(await res.json(), { username: 'admin' })

  // The curl lines, exactly as printed, in a shell.
  const lines = out.split('\n').filter((l) => /^ {2}(read -rs PASSWORD|TOKEN=\$\(printf|curl -s http\S+\/me )/.test(l)).map((l) => l.trim())
  t.equal(lines.length, 3, 'the banner has the password prompt, the login and the /me curl lines')
  t.notOk(lines.join('\n').includes(password!), 'no password in the suggested commands (not in argv, not in shell history)')
  if (spawnSync('curl', ['--version']).status !== 0) {
    t.comment('curl is not installed: the printed lines were not run')
  } else {
    const sh = spawnSync('bash', ['-c', lines.join('\n')], { encoding: 'utf8', timeout: 60_000, input: `${password!}\n` })
    t.equal(sh.status, 0, 'the printed curl lines run')
    t.match(JSON.parse(sh.stdout), { username: 'admin' }, 'and /me answers with the user')
  }

  // The CLI cannot open ./.data while the server holds it, and says so.
  const busy = await cli(['token', 'list', 'admin'], { cwd, env: {} })
  t.equal(busy.code, 1, 'the CLI beside the running server: exit 1')
  t.match(busy.stderr, /is in use by another process \(pid \d+\), probably the server started with `npm start`/)
  t.match(busy.stderr, /stop the server \(Ctrl-C\), run this command again/)

  res = await fetch(`${url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.status, 204, '/logout')
  res = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(res.status, 401, 'the token is revoked')

  await stop(t, server)
  t.notOk(existsSync(path.join(cwd, '.data', 'LOCK')), 'the embedded database lock is released')

  const logLines = server.stdout().split('\n').filter((l) => l.startsWith('{'))
  t.ok(logLines.some((l) => l.includes('"url":"/me"')), 'requests are logged')
  t.ok(logLines.some((l) => l.includes('SIGTERM: closing')), 'the shutdown is logged')
  const logs = logLines.join('\n') + server.stderr()
  t.notOk(logs.includes(token), 'the token appears in no log line')
  t.notOk(logs.includes(password!), 'the password appears in no log line')
  t.notMatch(logs, /"authorization"\s*:/i, 'no Authorization header in the logs')
  t.notMatch(logs, /bearer\s+tat_/i, 'no bearer credentials in the logs')

  // Second start on the same ./.data: the admin exists, no password is printed.
  const again = startServer(t, cwd)
  const out2 = await banner(again)
  t.notMatch(out2, /created the user/, 'second start: no new user')
  t.notOk(out2.includes(password!), 'and the password is not printed again')
  t.match(out2, /"username":"<username>","password":"%s"/, 'the curl lines have a placeholder for the username')
  const url2 = /example server on (http:\/\/127\.0\.0\.1:\d+)/.exec(out2)?.[1]
  res = await fetch(`${url2}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) })
  t.equal(res.status, 200, 'the admin password still works after a restart')
  await stop(t, again)
})

t.test('a start that cannot work is one line on stderr, exit 1, no stack trace and never the password', async (t) => {
  const cwd = tempDir(t)
  const cluster = await startCluster({ hba: ['host all app 127.0.0.1/32 scram-sha-256'] })
  t.teardown(() => cluster.stop())
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {} })
  await admin.unsafe("create role app login password 'right-password'")
  await admin.end()
  const at = (user: string, db = 'postgres'): string => `postgres://${user}@127.0.0.1:${cluster.port}/${db}`
  const cases: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['nothing listens', { DATABASE_URL: 'postgres://app:s3cret-pw@127.0.0.1:1/nothing' },
      /^Cannot start: cannot use the database at app@127\.0\.0\.1:1\/nothing: nothing listens there \(ECONNREFUSED\)\n$/],
    ['a wrong password', { DATABASE_URL: at('app:s3cret-pw') },
      new RegExp(`^Cannot start: cannot use the database at app@127\\.0\\.0\\.1:${cluster.port}/postgres: the password was refused \\(28P01\\)\\n$`)],
    ['no such database', { DATABASE_URL: at('app:right-password', 'nothing') }, /^Cannot start: cannot use the database at .*\/nothing: that database does not exist \(3D000\)\n$/],
    ['a port in use', { DATABASE_URL: at('postgres'), PORT: String(cluster.port) }, /^Cannot start: listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+\n$/]
  ]
  for (const [what, env, line] of cases) {
    const server = startServer(t, cwd, env)
    const code = await Promise.race([server.exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 60_000))])
    t.equal(code, 1, `${what}: exit 1`)
    t.match(server.stderr(), line, `${what}: one line saying what is wrong`)
    t.notMatch(server.stderr() + server.stdout(), /s3cret-pw|right-password/, `${what}: no password`)
    t.notMatch(server.stderr(), /^\s+at /m, `${what}: no stack trace`)
  }
})
