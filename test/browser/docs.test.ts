// A real browser on the example server's OpenAPI docs (`npm run test:browser`). It proves that with
// headless Chromium (Debian's chromium, driven by playwright-core):
// - /docs loads without any token (the docs are public), while GET /me fetched from the page is 401;
// - Swagger UI's Authorize with a token made by the CLI sends it as `Authorization: Bearer <token>`,
//   and "Try it out" / "Execute" on GET /me shows 200 and the token's user (alice);
// - after Logout and Authorize with a wrong token, Execute shows 401 and the response headers show
//   `www-authenticate: Bearer realm="api", error="invalid_token"` (the browser received exactly that;
//   Swagger UI displays it as `Bearer realm="api",error="invalid_token"`: its HTTP client splits every
//   header value at ", " and the page joins the parts again with ",").
// A screenshot of each execution is saved in a temporary directory (its path is in the tap output).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdtempSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Locator, type Page, type Request, type Response as PageResponse } from 'playwright-core'
import t, { type Test } from 'tap'
import { cli, tempDir, TOKEN_RE } from '../helpers/cli.js'
import { databaseUrl, freshDatabase } from '../helpers/db.js'

// Two CLI processes, a server process and a browser: more than .taprc's 120 s on a busy machine.
t.setTimeout(300_000)

const CHROMIUM = '/usr/bin/chromium'
const SERVER = fileURLToPath(new URL('../../example/server.ts', import.meta.url))
const TSX = createRequire(import.meta.url).resolve('tsx')
/** For every wait on the page: generous, for a busy 2-core machine. */
const WAIT = 30_000

interface Server {
  child: ChildProcessWithoutNullStreams
  /** The base URL from the banner, e.g. http://127.0.0.1:41234 */
  url: Promise<string>
  output: () => string
}

/** example/server.ts as its own process (on PostgreSQL at `dbUrl`, or else on ./.data in `cwd`), killed at teardown. */
function startServer (t: Test, cwd: string, dbUrl: string | undefined): Server {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', DATABASE_URL: dbUrl }
  if (dbUrl === undefined) delete env.DATABASE_URL
  delete env.TOKEN_AUTH_DATA_DIR
  const child = spawn(process.execPath, ['--import', TSX, SERVER], { cwd, env })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 90 s: ${output}`)), 90_000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d
      const m = /example server on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(output)
      if (m !== null) { clearTimeout(timer); resolve(m[1]) }
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { output += d })
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the server exited (${code}): ${output}`)) })
  })
  return { child, url, output: () => output }
}

async function stopServer (server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return
  const exited = new Promise((resolve) => server.child.on('exit', resolve))
  server.child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, 30_000) })])
  clearTimeout(timer)
}

/** The Swagger UI operation block of `GET <route>`. */
function operation (page: Page, route: string): Locator {
  return page.locator('.opblock.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: new RegExp(`^${route}$`) }) })
}

/** Opens the Authorize dialog, logs out first when authorized, types the token, applies it, closes the dialog. */
async function authorize (page: Page, token: string): Promise<void> {
  await page.locator('.btn.authorize').first().click()
  const dialog = page.locator('.dialog-ux .modal-ux')
  await dialog.locator('h4', { hasText: 'bearerAuth' }).waitFor({ timeout: WAIT })
  const logout = dialog.getByRole('button', { name: 'Remove authorization' })
  if (await logout.isVisible()) await logout.click()
  await dialog.locator('.auth-container input[type=text]').fill(token)
  await dialog.getByRole('button', { name: 'Apply credentials' }).click()
  await dialog.locator('h6', { hasText: 'Authorized' }).waitFor({ timeout: WAIT })
  await dialog.getByRole('button', { name: 'Close' }).click()
  await dialog.waitFor({ state: 'detached', timeout: WAIT })
}

interface Shown {
  /** The request the browser sent for this execution, and the response it received. */
  request: Request
  response: PageResponse
  /** The code in the live response table, e.g. '200'. */
  status: string
  /** Whether Swagger UI marks that code "Undocumented" (not among the operation's responses). */
  undocumented: boolean
  /** The response body as the page shows it. */
  body: string
  /** The lines of "Response headers", trimmed, e.g. 'content-length: 51'. */
  headers: string[]
}

/** Clicks Execute on the (expanded, tried-out) operation and reads the response Swagger UI shows. */
async function execute (page: Page, op: Locator, expectedStatus: number): Promise<Shown> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/me', { timeout: WAIT }),
    op.locator('button.execute').click()
  ])
  const row = op.locator('.live-responses-table tbody tr.response', {
    has: page.locator('.response-col_status', { hasText: new RegExp(`^\\s*${expectedStatus}\\b`) })
  })
  // Waits until the page shows the expected code; when it shows another one, the wait fails and
  // the code shown is in the assertion below.
  await row.waitFor({ timeout: WAIT }).catch(() => {})
  const live = op.locator('.live-responses-table tbody tr.response')
  const cell = live.locator('.response-col_status')
  const status = /^\s*(\d*)/.exec(await cell.innerText({ timeout: WAIT }))![1]
  const undocumented = await cell.locator('.response-undocumented').count() > 0
  const body = await live.locator('.response-col_description pre.microlight').first().innerText({ timeout: WAIT })
  const headers = await live.locator('.response-col_description .headerline').allInnerTexts()
  return { request: response.request(), response, status, undocumented, body, headers: headers.map((h) => h.trim()) }
}

t.test('Swagger UI at /docs in headless Chromium: Authorize, GET /me, 200 then 401', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: run \`bash test/browser/ensure-chromium.sh\` (as root), or \`npm run test:browser\`, which does`)
    return
  }
  const cwd = tempDir(t)
  // A fresh PostgreSQL database; without DATABASE_URL, the embedded one in ./.data of cwd, which the
  // CLI (migrate first) and then the server open in turn.
  const url = databaseUrl() === undefined ? undefined : (await freshDatabase(t, { migrate: true })).url
  const env = { DATABASE_URL: url }
  if (url === undefined) {
    t.comment('no DATABASE_URL: the CLI and the server on an embedded database in a temporary directory')
    const m = await cli(['migrate'], { cwd, env })
    t.equal(m.code, 0, `the CLI migrates the embedded database ${m.stderr}`)
  }
  const shots = mkdtempSync(path.join(tmpdir(), 'tat-browser-'))
  t.comment(`screenshots in ${shots}`)

  let r = await cli(['user', 'create', 'alice'], { cwd, env, input: 'a password\n' })
  t.equal(r.code, 0, `the CLI creates the user alice ${r.stderr}`)
  r = await cli(['token', 'create', 'alice'], { cwd, env })
  t.equal(r.code, 0, `the CLI creates a token for alice ${r.stderr}`)
  const token = r.stdout.trim()
  t.match(token, TOKEN_RE, 'the CLI printed a token')
  // Well formed, one character off: not a token the server issued.
  const wrong = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')

  const server = startServer(t, cwd, url)
  const base = await server.url
  t.teardown(() => stopServer(server))

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 120_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update']
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
  page.setDefaultTimeout(WAIT)
  const withAuthorization: string[] = []
  page.on('request', (req) => { if (req.headers().authorization !== undefined) withAuthorization.push(req.url()) })

  // The docs are public: the page and its OpenAPI document load with no token at all.
  const loaded = await page.goto(`${base}/docs`, { timeout: 60_000 })
  t.equal(loaded?.status(), 200, 'GET /docs answers 200 without a token')
  await page.locator('.swagger-ui .info .title', { hasText: 'fastify-token-auth example' }).waitFor({ timeout: 60_000 })
  const me = operation(page, '/me')
  await me.waitFor({ timeout: WAIT })
  t.pass('Swagger UI rendered the API, GET /me included')
  t.same(withAuthorization, [], 'no request of the page carried an Authorization header')

  const anonymous = await page.evaluate(async () => {
    const res = await fetch('/me')
    return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate') }
  })
  t.same(anonymous, { status: 401, wwwAuthenticate: 'Bearer realm="api"' }, 'fetch(\'/me\') from the page without Authorize: 401')

  // Authorize with the CLI's token, then GET /me: Try it out, Execute.
  await authorize(page, token)
  await me.locator('.opblock-summary-path').click()
  await me.locator('button.try-out__btn', { hasText: 'Try it out' }).click()
  let shown = await execute(page, me, 200)
  await page.screenshot({ path: path.join(shots, '1-me-200.png'), fullPage: true })
  t.equal(shown.request.headers().authorization, `Bearer ${token}`, 'Swagger UI sent the token as a bearer token')
  t.equal(shown.status, '200', 'the page shows 200')
  t.match(JSON.parse(shown.body), { username: 'alice', scopes: [] }, 'and the response body shows the user alice')
  t.match(shown.body, /"username": "alice"/)
  t.ok(shown.headers.includes('content-type: application/json; charset=utf-8'), 'the response headers are shown')

  // Logout, Authorize with a wrong token, Execute again.
  await authorize(page, wrong)
  shown = await execute(page, me, 401)
  await page.screenshot({ path: path.join(shots, '2-me-401.png'), fullPage: true })
  t.equal(shown.request.headers().authorization, `Bearer ${wrong}`, 'the wrong token replaced the good one')
  t.equal(shown.status, '401', 'the page shows 401')
  t.comment(`Swagger UI ${shown.undocumented ? 'marks' : 'does not mark'} the 401 "Undocumented" (/me's schema lists no 401 response)`)
  t.match(JSON.parse(shown.body), { statusCode: 401, error: 'Unauthorized', message: 'Invalid token' }, 'and the error body')
  t.equal(await shown.response.headerValue('www-authenticate'), 'Bearer realm="api", error="invalid_token"',
    'the browser received WWW-Authenticate: Bearer realm="api", error="invalid_token"')
  t.ok(shown.headers.some((h) => /^www-authenticate: Bearer realm="api", ?error="invalid_token"$/.test(h)),
    `and the page's response headers show it (shown: ${JSON.stringify(shown.headers)})`)

  await browser.close()
  await stopServer(server)
  t.equal(server.child.exitCode, 0, 'the server exits 0 on SIGTERM')
})
