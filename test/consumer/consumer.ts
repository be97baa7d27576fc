/**
 * The package as a user gets it (`npm run test:consumer`; .ci/run runs it after `npm test`):
 * `npm pack`, the tarball installed into a fresh app with its own package.json and tsconfig.json
 * (strict), then
 *  (a) every TypeScript block of the README compiled (tsc), and the runnable ones run against
 *      PostgreSQL, printing what the README says they print;
 *  (b) the bin: --help, migrate, user create, token create, and token create for the app's own users
 *      through --config;
 *  (c) the README's app with its own users table: the real `drizzle-kit generate` and
 *      `drizzle-kit migrate` on its schema, which imports `fastify-token-auth/schema`.
 * The runnable examples and the bin run on this Node and on Node 24 (`npx -y node@24`).
 */
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { readmeBlocks, type Block } from './readme-blocks.js'

t.setTimeout(20 * 60_000)
const exec = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const work = mkdtempSync(path.join(tmpdir(), 'tat-consumer-'))
const app = path.join(work, 'app')
t.teardown(() => rmSync(work, { recursive: true, force: true }))

/** The version this repository installed, so npm finds it in its cache. */
const installed = (name: string): string => (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version

interface Run { code: number | null, stdout: string, stderr: string }

function run (cmd: string, args: string[], opts: { cwd: string, env?: NodeJS.ProcessEnv, input?: string, timeout?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 120_000)
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.end(opts.input ?? '')
  })
}

let databases = 0
/** A fresh database on the server of DATABASE_URL, dropped at the end. */
async function freshDatabase (): Promise<string> {
  const name = `tat_consumer_${process.pid}_${databases++}`
  const admin = postgres(BASE_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`drop database if exists "${name}" with (force)`)
  await admin.unsafe(`create database "${name}"`)
  await admin.end()
  t.teardown(async () => {
    const a = postgres(BASE_URL, { max: 1, onnotice: () => {} })
    await a.unsafe(`drop database if exists "${name}" with (force)`)
    await a.end()
  })
  const url = new URL(BASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

async function sql (url: string, text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const client = postgres(url, { max: 1, onnotice: () => {} })
  try { return [...await client.unsafe(text, params as never[])] } finally { await client.end() }
}

/** Compares what a block printed with its `// →` lines. */
function checkOutput (t: Test, block: Block, result: Run, node: string): void {
  t.equal(result.code, 0, `README line ${block.line} (${block.file}) on ${node}: exit 0${result.code === 0 ? '' : `\n${result.stderr.slice(-2000)}`}`)
  t.same(result.stdout.trimEnd().split('\n'), block.expected, `README line ${block.line}: prints what the README says, on ${node}`)
}

const blocks = readmeBlocks(readFileSync(path.join(ROOT, 'README.md'), 'utf8'))
const projects = [...new Set(blocks.map((b) => b.file.split('/')[0]))]
let nodes: Array<{ name: string, bin: string }> = []
let tarball = ''

t.before(async () => {
  const packed = await exec('npm', ['pack', '--silent', '--pack-destination', work], { cwd: ROOT, maxBuffer: 16 << 20 })
  tarball = path.join(work, packed.stdout.trim().split('\n').pop() as string)
  mkdirSync(app)
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({
    name: 'consumer-app',
    private: true,
    type: 'module',
    dependencies: {
      'fastify-token-auth': `file:${tarball}`,
      fastify: installed('fastify'),
      'drizzle-orm': installed('drizzle-orm'),
      bcryptjs: installed('bcryptjs')
    },
    devDependencies: {
      // What the README's examples use beside the plugin.
      ...Object.fromEntries(['@fastify/cors', '@fastify/helmet', '@fastify/swagger', '@fastify/swagger-ui', '@fastify/static', '@fastify/websocket', '@types/ws', 'ioredis', '@fastify/rate-limit']
        .map((name) => [name, installed(name)])),
      'drizzle-kit': installed('drizzle-kit'),
      typescript: installed('typescript'),
      '@types/node': installed('@types/node')
    }
  }, null, 2))
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, maxBuffer: 16 << 20, timeout: 600_000 })
  const node24 = (await exec('npx', ['-y', 'node@24', '-p', 'process.execPath'], { cwd: work, timeout: 600_000 })).stdout.trim()
  nodes = [{ name: `Node ${process.versions.node}`, bin: process.execPath }, { name: 'Node 24', bin: node24 }]
  const v24 = (await exec(node24, ['--version'])).stdout.trim()
  if (!v24.startsWith('v24.')) throw new Error(`npx -y node@24 gave ${v24}`)
})

t.test('the tarball ships the build, the migrations, README and LICENSE, and no source maps that cannot resolve', async (t) => {
  const list = (await exec('tar', ['tzf', tarball])).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''))
  for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/store/schema.js', 'dist/cjs/store/schema.js', 'dist/cli/bin.js', 'drizzle/0000_init.sql', 'README.md', 'LICENSE', 'package.json']) {
    t.ok(list.includes(f), f)
  }
  t.notOk(list.some((f) => f.endsWith('.map')), 'no source maps (their sources are not shipped)')
  t.notOk(list.some((f) => f.startsWith('lib/') || f.startsWith('test/')), 'no sources or tests')
})

t.test('(a) every README block compiles under strict, in a fresh app', async (t) => {
  t.ok(blocks.length >= 10, `${blocks.length} blocks`)
  for (const project of projects) {
    const dir = path.join(app, 'readme', project)
    mkdirSync(dir, { recursive: true })
    for (const block of blocks.filter((b) => b.file.startsWith(project + '/'))) writeFileSync(path.join(app, 'readme', block.file), block.code)
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], skipLibCheck: true, outDir: 'out', rootDir: '.'
      },
      exclude: ['out']
    }))
    const tsc = await run(path.join(app, 'node_modules', '.bin', 'tsc'), ['-p', dir], { cwd: app })
    const files = blocks.filter((b) => b.file.startsWith(project + '/')).map((b) => `${b.file} (README line ${b.line})`).join(', ')
    t.equal(tsc.code, 0, `${project}: ${files} compile${tsc.code === 0 ? '' : `\n${tsc.stdout}${tsc.stderr}`}`)
  }
})

t.test('(a) the runnable README blocks print what the README says, on Node 20 and 24', async (t) => {
  const runnable = blocks.filter((b) => b.run && !b.file.startsWith('own-users/'))
  t.ok(runnable.length >= 2)
  for (const block of runnable) {
    for (const node of nodes) {
      const url = await freshDatabase()
      const js = path.join(app, 'readme', block.file.split('/')[0], 'out', block.file.split('/').slice(1).join('/').replace(/\.ts$/, '.js'))
      checkOutput(t, block, await run(node.bin, [js], { cwd: app, env: { DATABASE_URL: url } }), node.name)
    }
  }
})

t.test('(c) the README\'s own-users app: drizzle-kit generate and migrate on a schema importing fastify-token-auth/schema, then the app', async (t) => {
  const dir = path.join(app, 'readme', 'own-users')
  const kit = path.join(app, 'node_modules', '.bin', 'drizzle-kit')
  for (const node of nodes) {
    const url = await freshDatabase()
    rmSync(path.join(dir, 'drizzle'), { recursive: true, force: true })
    const gen = await run(kit, ['generate'], { cwd: dir, env: { DATABASE_URL: url } })
    t.equal(gen.code, 0, `drizzle-kit generate${gen.code === 0 ? '' : `\n${gen.stdout}${gen.stderr}`}`)
    const sqlFiles = readdirSync(path.join(dir, 'drizzle')).filter((f) => f.endsWith('.sql'))
    const generated = readFileSync(path.join(dir, 'drizzle', sqlFiles[0]), 'utf8')
    t.match(generated, /CREATE TABLE "token_auth_tokens"[\s\S]*"user_id" uuid NOT NULL/, 'the tokens table, with a uuid user_id')
    t.match(generated, /FOREIGN KEY \("user_id"\) REFERENCES "public"\."users"\("id"\) ON DELETE cascade/, 'referencing the app\'s users, cascading')
    const mig = await run(kit, ['migrate'], { cwd: dir, env: { DATABASE_URL: url } })
    t.equal(mig.code, 0, `drizzle-kit migrate${mig.code === 0 ? '' : `\n${mig.stdout}${mig.stderr}`}`)

    // The bin with the app's config: a token for an app user (before the app runs: it deletes Ada).
    await sql(url, "insert into users (email, password_hash) values ('grace@example.com', 'x')")
    const bin = path.join(app, 'node_modules', 'fastify-token-auth', 'dist', 'cli', 'bin.js')
    const created = await run(node.bin, [bin, '--config', path.join(dir, 'out', 'token-auth.config.js'), 'token', 'create', 'Grace@example.com'], { cwd: dir, env: { DATABASE_URL: url } })
    t.equal(created.code, 0, `token create for the app's user, on ${node.name}${created.code === 0 ? '' : `\n${created.stderr}`}`)
    t.match(created.stdout, /^tat_[0-9A-Za-z]{36}\n$/)
    t.same(await sql(url, 'select u.email from token_auth_tokens t join users u on u.id = t.user_id'), [{ email: 'grace@example.com' }])

    const block = blocks.find((b) => b.file === 'own-users/app.ts') as Block
    checkOutput(t, block, await run(node.bin, [path.join(dir, 'out', 'app.js')], { cwd: dir, env: { DATABASE_URL: url } }), node.name)
    t.same(await sql(url, "select count(*)::int as n from token_auth_tokens t join users u on u.id = t.user_id where u.email = 'ada@example.com'"), [{ n: 0 }],
      'the deleted user\'s tokens are gone (cascade)')
  }
})

t.test('(b) the bin after install: --help, migrate, user create, token create', async (t) => {
  for (const node of nodes) {
    const url = await freshDatabase()
    const env = { DATABASE_URL: url }
    const npx = (args: string[], input?: string): Promise<Run> => node.bin === process.execPath
      ? run('npx', ['--no-install', 'fastify-token-auth', ...args], { cwd: app, env, input })
      : run(node.bin, [path.join(app, 'node_modules', '.bin', 'fastify-token-auth'), ...args], { cwd: app, env, input })
    let r = await npx(['--help'])
    t.equal(r.code, 0, `--help on ${node.name}`)
    t.match(r.stdout, /^Usage: fastify-token-auth <command> \[options\]/)
    r = await npx(['--version'])
    t.equal(r.stdout.trim(), (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version)
    r = await npx(['migrate'])
    t.equal(r.code, 0, `migrate on ${node.name}${r.code === 0 ? '' : `\n${r.stderr}`}`)
    t.match(r.stdout, /migrations applied/)
    r = await npx(['user', 'create', 'alice'], 'a password\n')
    t.equal(r.code, 0, `user create on ${node.name}${r.code === 0 ? '' : `\n${r.stderr}`}`)
    r = await npx(['token', 'create', 'alice', '--name', 'ci', '--scopes', 'read'])
    t.equal(r.code, 0, `token create on ${node.name}`)
    t.match(r.stdout, /^tat_[0-9A-Za-z]{36}\n$/)
    t.same(await sql(url, 'select name, scopes from token_auth_tokens'), [{ name: 'ci', scopes: ['read'] }])
  }
})

/** `drizzle-kit generate` in a terminal (script(1)), answering its question "created or renamed?" with rename. */
function generateWithRename (cwd: string, env: NodeJS.ProcessEnv): Promise<Run> {
  const kit = path.join(app, 'node_modules', '.bin', 'drizzle-kit')
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qefc', `${kit} generate`, '/dev/null'], { cwd, env: { ...process.env, ...env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let step = 0
    const plain = (): string => out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '') // eslint-disable-line no-control-regex
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      // The prompt lists "+ hint create column" first, then "~ prefix › hint rename column": down, then enter.
      if (step === 0 && /created or renamed from another column\?/.test(plain())) { step = 1; child.stdin.write('\x1b[B') }
      if (step === 1 && /❯ ~ prefix › hint\s+rename column/.test(plain())) { step = 2; child.stdin.write('\r') }
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout: plain(), stderr: '' }) })
  })
}

t.test('(c) an app that put the 0.1.0 tables in its own drizzle-kit migrations upgrades without losing a row', async (t) => {
  const dir = path.join(app, 'upgrade')
  mkdirSync(dir, { recursive: true })
  const url = await freshDatabase()
  const env = { DATABASE_URL: url }
  writeFileSync(path.join(dir, 'drizzle.config.ts'), "import { defineConfig } from 'drizzle-kit'\n" +
    "export default defineConfig({ dialect: 'postgresql', schema: './schema.ts', out: './drizzle', dbCredentials: { url: process.env.DATABASE_URL! } })\n")
  // 0.1.0's tables, as an app would have copied them (the package did not export them then).
  writeFileSync(path.join(dir, 'schema.ts'), readFileSync(new URL('./schema-0.1.0.ts.txt', import.meta.url), 'utf8'))
  const kit = path.join(app, 'node_modules', '.bin', 'drizzle-kit')
  for (const step of ['generate', 'migrate']) {
    const r = await run(kit, [step], { cwd: dir, env })
    t.equal(r.code, 0, `0.1.0 tables: drizzle-kit ${step}${r.code === 0 ? '' : `\n${r.stdout}${r.stderr}`}`)
  }
  // A user and a real token in them.
  const made = await run(process.execPath, ['--input-type=module', '-e',
    "import { generateToken, hashToken } from 'fastify-token-auth'; const t = generateToken(); console.log(JSON.stringify({ token: t, hash: hashToken(t) }))"], { cwd: app })
  const { token, hash } = JSON.parse(made.stdout) as { token: string, hash: string }
  await sql(url, "insert into token_auth_users (username, password_hash) values ('old', 'x')")
  await sql(url, "insert into token_auth_tokens (user_id, token_hash, prefix, name) select id, $1, $2, 'laptop' from token_auth_users", [hash, token.slice(0, 8)])

  // The upgrade: the schema now takes the tables from the package.
  writeFileSync(path.join(dir, 'schema.ts'), "export { users, tokens, throttle, events } from 'fastify-token-auth/schema'\n")
  const gen = await generateWithRename(dir, env)
  t.equal(gen.code, 0, `drizzle-kit generate, "prefix" renamed to "hint"${gen.code === 0 ? '' : `\n${gen.stdout}`}`)
  const migrations = readdirSync(path.join(dir, 'drizzle')).filter((f) => f.endsWith('.sql')).sort()
  t.equal(migrations.length, 2)
  const upgrade = readFileSync(path.join(dir, 'drizzle', migrations[1]), 'utf8')
  t.match(upgrade, /ALTER TABLE "token_auth_tokens" RENAME COLUMN "prefix" TO "hint";/)
  t.match(upgrade, /CREATE TABLE "token_auth_throttle"/)
  t.match(upgrade, /CREATE TABLE "token_auth_events"/)
  t.notMatch(upgrade, /DROP|ADD COLUMN "hint"/, 'a rename, not a drop and an add')
  const mig = await run(kit, ['migrate'], { cwd: dir, env })
  t.equal(mig.code, 0, 'drizzle-kit migrate')
  t.same(await sql(url, 'select u.username, t.hint, t.name from token_auth_tokens t join token_auth_users u on u.id = t.user_id'),
    [{ username: 'old', hint: token.slice(0, 8), name: 'laptop' }], 'every row kept')
  // The plugin on the upgraded tables (the app's own: it does not migrate them) accepts the old token.
  const check = await run(process.execPath, ['--input-type=module', '-e', [
    "import Fastify from 'fastify'",
    "import tokenAuth, { createDatabase } from 'fastify-token-auth'",
    'const database = await createDatabase(process.env.DATABASE_URL)',
    'const app = Fastify()',
    'await app.register(tokenAuth, { database })',
    "app.get('/me', { preHandler: app.auth }, async (req) => req.user)",
    "const res = await app.inject({ url: '/me', headers: { authorization: 'Bearer ' + process.env.TOKEN } })",
    'console.log(res.statusCode, res.json().username)',
    'await app.close(); await database.close()'
  ].join('\n')], { cwd: app, env: { ...env, TOKEN: token } })
  t.equal(check.stdout.trim(), '200 old', `the token made before the upgrade works${check.code === 0 ? '' : `\n${check.stderr}`}`)
})
