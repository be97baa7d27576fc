/**
 * What `npm start` runs. Environment:
 *   PORT                 default 3000 (0: any free port)
 *   HOST                 default 127.0.0.1
 *   DATABASE_URL         PostgreSQL; unset: the embedded PGlite database in ./.data
 *   TOKEN_AUTH_DATA_DIR  the embedded database's directory instead of ./.data
 *   LOG_LEVEL            default info
 *
 * Applies the migrations, and on the first start with an empty embedded database creates the user
 * `admin` with a random password, printed once with curl lines to try it (the CLI cannot open the
 * embedded database while this process holds it). SIGINT/SIGTERM close the app, then the database.
 */
import { createDatabase, migrate, type Database } from '../lib/index.js'
import { banner, buildServer, createFirstUser } from './app.js'

const port = parsePort(process.env.PORT)
const host = process.env.HOST === undefined || process.env.HOST === '' ? '127.0.0.1' : process.env.HOST
const url = process.env.DATABASE_URL === '' ? undefined : process.env.DATABASE_URL
const dataDir = process.env.TOKEN_AUTH_DATA_DIR === '' ? undefined : process.env.TOKEN_AUTH_DATA_DIR

function parsePort (value: string | undefined): number {
  if (value === undefined || value === '') return 3000
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n > 65535) {
    process.stderr.write(`PORT must be a number from 0 to 65535, got ${JSON.stringify(value)}\n`)
    process.exit(2)
  }
  return n
}

/** A startup failure is one line on stderr and exit status 1: no stack trace, never the URL's password. */
function fail (err: unknown): never {
  const message = err instanceof Error ? err.message : String(err)
  process.stderr.write(`Cannot start: ${message.split('\n')[0]}\n`)
  process.exit(1)
}

/** The database (migrated) and the app on it; the database is closed again if anything fails. */
async function start (): Promise<{ database: Database, app: Awaited<ReturnType<typeof buildServer>> }> {
  const database = await createDatabase(url, { dataDir })
  try {
    await migrate(database)
    return { database, app: await buildServer({ database }) }
  } catch (err) {
    await database.close().catch(() => {})
    throw err
  }
}

const { database, app } = await start().catch(fail)

let closing = false
async function shutdown (signal: string): Promise<void> {
  if (closing) {
    app.log.warn(`${signal} again: exiting now`)
    process.exit(1)
  }
  closing = true
  app.log.info(`${signal}: closing`)
  try {
    await app.close()
  } finally {
    await database.close()
  }
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    shutdown(signal).then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  })
}

try {
  await app.listen({ port, host })
  // After listen: a start that fails (port taken) must not create a user whose password nobody saw.
  const firstUser = database.kind === 'pglite' ? await createFirstUser(app.tokenAuth.service!) : null
  const address = app.server.address()
  const actualPort = typeof address === 'object' && address !== null ? address.port : port
  const curlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host
  process.stdout.write(banner({ url: `http://${curlHost}:${actualPort}`, firstUser, dataDir: database.dataDir }) + '\n')
} catch (err) {
  await app.close().catch(() => {})
  await database.close().catch(() => {})
  fail(err)
}
