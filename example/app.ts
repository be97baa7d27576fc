/**
 * The example application that `npm start` runs (see server.ts for the process around it). Every
 * route needs a token (the plugin's global mode) except the docs and the health check:
 *
 *   GET  /docs     public: the OpenAPI documentation (Swagger UI: Authorize with a token, try the routes)
 *   GET  /health   public: 200 { status: 'ok' } when the database answers, else 503
 *   GET  /me       the user the bearer token belongs to
 *   POST /login, POST /logout, POST /logout/all   from the plugin (given a `database`)
 *
 * buildServer() makes the app without listening, so tests can `inject` into it.
 */
import { randomBytes } from 'node:crypto'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import tokenAuth, { users, type ListenFn, type TokenAuthDatabase, type TokenService, type TokenServiceOptions } from '../lib/index.js'
import { ping } from '../lib/store/database.js'

/**
 * Fastify's logger with the credentials taken out. Fastify's default request serializer logs the
 * method, URL, host and remote address only (no headers, never the body); the redaction keeps the
 * Authorization and Cookie headers out should a serializer or a log call add the headers.
 */
export const loggerOptions = {
  level: process.env.LOG_LEVEL ?? 'info',
  redact: {
    paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie'],
    censor: '[redacted]'
  }
}

export interface BuildServerOptions {
  /** The store (createDatabase()'s result, migrated). The caller owns it and closes it. */
  database: { db: TokenAuthDatabase, listen?: ListenFn }
  /** Fastify's `logger` option. Default: `loggerOptions` (Authorization redacted). */
  logger?: FastifyServerOptions['logger']
  /** Options of the plugin's TokenService (e.g. faster scrypt parameters in tests). */
  service?: TokenServiceOptions
}

const userSchema = {
  type: 'object',
  properties: { id: { type: 'integer' }, username: { type: 'string' }, tokenId: { type: 'integer' }, scopes: { type: 'array', items: { type: 'string' } } }
}

export async function buildServer (opts: BuildServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? loggerOptions })
  await app.register(swagger, {
    openapi: {
      info: { title: 'fastify-token-auth example', version: '1.0.0' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'A token from POST /login or `fastify-token-auth token create`' } } }
    }
  })
  await app.register(tokenAuth, { database: opts.database, service: opts.service, global: true, exclude: ['/docs', '/docs/*'] })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  app.get('/health', { config: { tokenAuth: false }, schema: { summary: 'Is the database answering?' } }, async (_request, reply) => {
    try {
      await ping(opts.database.db)
      return { status: 'ok' }
    } catch (err) {
      app.log.error({ err }, 'health check: the database does not answer')
      return await reply.code(503).send({ status: 'unavailable' })
    }
  })

  app.get('/me', { schema: { summary: 'The user of the bearer token', response: { 200: userSchema } } }, async (request) => request.user)

  return app
}

export interface FirstUser {
  username: string
  /** The generated password: shown once, stored only as its scrypt hash. */
  password: string
}

/**
 * When the store has no user at all, creates `admin` with a random password and returns both;
 * otherwise null. (A read of the users table; the user is created through the TokenService.)
 */
export async function createFirstUser (service: TokenService, username = 'admin'): Promise<FirstUser | null> {
  const any = await service.db.select({ id: users.id }).from(users).limit(1)
  if (any.length > 0) return null
  const password = randomBytes(18).toString('base64url') // 24 characters, 144 bits
  await service.createUser(username, password)
  return { username, password }
}

export interface BannerOptions {
  /** Base URL the curl lines use, e.g. http://127.0.0.1:3000 */
  url: string
  /** The user created on this start, or null when the store already had users. */
  firstUser: FirstUser | null
  /** The embedded database's directory, or undefined on PostgreSQL. */
  dataDir: string | undefined
}

/** What the server prints on start: the first user's password (once) and how to try it with curl. */
export function banner ({ url, firstUser, dataDir }: BannerOptions): string {
  const cli = 'npx tsx lib/cli/bin.ts'
  const lines: string[] = ['', `fastify-token-auth example server on ${url}`, '']
  const username = firstUser?.username ?? '<username>'
  if (firstUser !== null) {
    lines.push(
      `First start with an empty database: created the user "${firstUser.username}" with the password`,
      '',
      `    ${firstUser.password}`,
      '',
      'It is shown this once and stored only as a hash: note it now.',
      ''
    )
  }
  lines.push(
    'Try it in bash or zsh (type the password at the first line: it is not echoed, and it goes to curl',
    'on its standard input, so it is in neither your shell history nor the process list):',
    '',
    '  read -rs PASSWORD',
    `  TOKEN=$(printf '{"username":"${username}","password":"%s"}' "$PASSWORD" | curl -s -X POST ${url}/login -H 'content-type: application/json' -d @- | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).token')`,
    `  curl -s ${url}/me -H "Authorization: Bearer $TOKEN"`,
    `  curl -s -X POST ${url}/logout -H "Authorization: Bearer $TOKEN"`,
    ''
  )
  if (dataDir !== undefined) {
    lines.push(
      `Users and tokens are kept in the embedded database at ${dataDir}, which one process at a time`,
      'can open. To manage them with the CLI, stop this server (Ctrl-C) first, then for example:',
      ''
    )
  } else {
    lines.push('Manage users and tokens with the CLI (same DATABASE_URL), for example:', '')
  }
  lines.push(
    `  ${cli} user create alice                  (asks for a password)`,
    `  ${cli} token create alice --name laptop   (prints a token)`,
    `  ${cli} token list alice`,
    `  ${cli} --help`,
    ''
  )
  return lines.join('\n')
}
