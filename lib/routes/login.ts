/**
 * POST /login: a username and password for a new bearer token. Its options, body check and OpenAPI
 * schema are here; routes/plugin.ts registers it in the routes' own context.
 *
 * The body is checked by hand (body.ts), the same way whatever Ajv options the app uses. Failed logins
 * are throttled (throttle.ts), and the password checks shared out fairly (store/kdf-queue.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { FST_TOKEN_AUTH_BAD_CREDENTIALS, FST_TOKEN_AUTH_LOGIN_THROTTLED, withHeaders } from '../errors.js'
import { CONTROL_CHARS_GLOBAL, isScopeToken } from '../grammar.js'
import type { TokenAuthProvider } from '../providers/provider.js'
import { ClientBusyError, TokenServiceError } from '../store/errors.js'
import { PASSWORD_MAX_LENGTH } from '../store/passwords.js'
import { MAX_EXPIRES_IN, MAX_SCOPES, TOKEN_NAME_MAX_LENGTH, type ServiceUser, type TokenService } from '../store/service.js'
import { USERNAME_MAX_LENGTH } from '../store/usernames.js'
import { arrayOf, nullable, optional, satisfies, seconds } from '../validate.js'
import { bodySchema, bodyValidator } from './body.js'
import type { RoutesContext } from './context.js'
import { bodyResponses, errorResponse, securityOf } from './schemas.js'
import { LoginThrottle, throttleOptions, type Throttled, type ThrottledAttempt } from './throttle.js'

/** What `routes` takes for /login (the path itself is with the others, in options.ts). */
export const LOGIN_OPTIONS = {
  loginGuard: optional(satisfies<TokenAuthProvider>((v) => typeof (v as TokenAuthProvider | null)?.getUser === 'function',
    'a provider (an object with getUser(token, request)), e.g. new SecretTokenAuthProvider({ tokens: [appToken] })')),
  tokenExpiresIn: nullable(seconds(undefined, 1, MAX_EXPIRES_IN)),
  tokenScopes: arrayOf(satisfies<string>(isScopeToken, 'an RFC 6749 scope token (printable ASCII, no space, \'"\' or \'\\\\\', at most 128)'),
    { max: MAX_SCOPES, expected: `an array of at most ${MAX_SCOPES} scope tokens`, default: [] }),
  throttle: throttleOptions
}

/** Largest /login body accepted, in bytes: the longest legal fields, fully \u-escaped, fit. */
export const LOGIN_BODY_LIMIT = 16 * 1024
const DEFAULT_TOKEN_NAME = 'login'

interface LoginBody { username: string, password: string, name?: string }

const LOGIN_FIELDS = {
  username: { type: 'string', min: 1, max: USERNAME_MAX_LENGTH, required: true, description: 'Case-insensitive (stored NFKC, lower case)' },
  password: { type: 'string', min: 1, max: PASSWORD_MAX_LENGTH, required: true, format: 'password' },
  name: { type: 'string', min: 0, max: TOKEN_NAME_MAX_LENGTH, plain: true, description: 'A name for the device or purpose of the token (default: the User-Agent)' }
} as const

/** A token name from the User-Agent: control characters dropped, trimmed, capped; else `login`. */
export function defaultTokenName (userAgent: string | undefined): string {
  if (typeof userAgent !== 'string') return DEFAULT_TOKEN_NAME
  const name = userAgent.replace(CONTROL_CHARS_GLOBAL, '').trim().slice(0, TOKEN_NAME_MAX_LENGTH).trim()
  return name === '' ? DEFAULT_TOKEN_NAME : name
}

function throttled (request: FastifyRequest, retryAfter: number): Error {
  request.log.info({ reason: 'login_throttled' }, 'fastify-token-auth: login refused: too many failed attempts')
  return withHeaders(new FST_TOKEN_AUTH_LOGIN_THROTTLED(), { 'retry-after': String(retryAfter) })
}

function accountOf (username: string, service: TokenService): string | null {
  try {
    return service.users.normalizeLogin(username)
  } catch {
    return null // cannot be an account: no per-account counter (the address counter still applies)
  }
}

/** Checks a login name and password for a request: throttled, fairly queued, failures counted. */
export type CredentialsCheck = (request: FastifyRequest, username: string, password: string) => Promise<ServiceUser | null>

/**
 * The check /login (and /password) make: the throttle first (429), then the password in the fair
 * queue; a wrong password, a refusal for too many at once and a timeout count against the client.
 * Resolves to the user, or null for bad credentials (counted, and an event).
 */
function credentialsCheck (ctx: RoutesContext): CredentialsCheck {
  const { service, options: o, storeCall } = ctx
  const throttle = o.throttle === false ? undefined : new LoginThrottle(o.throttle, o.throttle.store ?? ctx.throttleStore!)
  const events = service.events
  const metrics = service.metrics.logins
  return async function check (request, username, password) {
    const account = accountOf(username, service)
    let attempt: ThrottledAttempt | undefined
    if (throttle !== undefined) {
      const result: ThrottledAttempt | Throttled = await storeCall(request, 'login throttle', throttle.begin(request, account), { untimed: true })
      if ('retryAfter' in result) {
        metrics.throttled++
        events.emit('login.throttled', { ip: request.ip, detail: { account } })
        throw throttled(request, result.retryAfter)
      }
      attempt = result
    }
    const fail = async (why: string): Promise<void> => {
      metrics.failed++
      events.emit('login.failed', { ip: request.ip, detail: { account, why } })
      if (attempt !== undefined) await storeCall(request, 'login throttle', attempt.fail(why !== 'unavailable'), { untimed: true })
    }
    try {
      let user
      try {
        user = await storeCall(request, 'login', service.verifyCredentials(username, password, { clients: attempt?.clients, trusted: attempt?.trusted }))
      } catch (err) {
        if (err instanceof ClientBusyError) {
          await fail('too many at once')
          throw throttled(request, 1)
        }
        // Timed out, or refused because too many wait in all (the store itself may be down: best effort).
        if ((err as { statusCode?: number }).statusCode === 503) await fail('unavailable').catch(() => {})
        throw err
      }
      if (user === null) {
        await fail('bad credentials')
        request.log.info({ reason: 'bad_credentials' }, 'fastify-token-auth: login refused')
        return null
      }
      if (attempt !== undefined) await storeCall(request, 'login throttle', attempt.succeed(), { untimed: true })
      return user
    } finally {
      attempt?.end()
    }
  }
}

/**
 * Registers POST <url> in `child` (the routes' context), unless `url` is false; resolves to the
 * credentials check, which /password shares.
 */
export function loginRoute (child: FastifyInstance, ctx: RoutesContext, url: string | false): CredentialsCheck {
  const { service, options: o, auth, storeCall } = ctx
  const check = credentialsCheck(ctx)
  if (url === false) return check
  // The tokens /login issues may manage the user's tokens (manageScope), beside the scopes asked for.
  const scopes = [...new Set([...o.tokenScopes, ...(o.manageScope === null ? [] : [o.manageScope])])]
  const responses: Record<string, unknown> = {
    200: {
      description: 'A new bearer token (shown once)',
      type: 'object',
      required: ['token', 'token_type'],
      additionalProperties: false,
      properties: {
        token: { type: 'string' },
        token_type: { type: 'string', enum: ['Bearer'] },
        ...(o.tokenExpiresIn === null && service.options.maxTokenLifetime === null ? {} : { expires_in: { type: 'integer', description: 'Lifetime of the token in seconds' } })
      }
    },
    400: errorResponse('Malformed body'),
    401: errorResponse(o.loginGuard === undefined ? 'Bad credentials' : 'Bad credentials, or a missing or unknown app token'),
    403: errorResponse('The user holds as many tokens as allowed (service.maxTokensPerUser)'),
    ...bodyResponses,
    ...(o.throttle === false ? {} : { 429: errorResponse('Too many failed logins for this account or address (see Retry-After)') }),
    503: errorResponse('The token store is unavailable (see Retry-After)')
  }
  const schema: FastifySchema & Record<string, unknown> = {
    tags: ['auth'],
    summary: 'Log in: exchange a username and password for a new bearer token',
    description: 'Every successful login issues a new token (one per device). Bad credentials, unknown users and deactivated users all get the same 401.',
    body: bodySchema(LOGIN_FIELDS),
    response: responses,
    ...securityOf(o.securityScheme, o.loginGuard !== undefined)
  }

  child.route({
    method: 'POST',
    url,
    bodyLimit: LOGIN_BODY_LIMIT,
    schema,
    validatorCompiler: bodyValidator(LOGIN_FIELDS),
    config: { tokenAuth: o.loginGuard === undefined ? false : { provider: o.loginGuard } },
    onRequest: o.loginGuard === undefined ? undefined : auth,
    handler: async function login (request: FastifyRequest, reply: FastifyReply) {
      const body = request.body as LoginBody
      const user = await check(request, body.username, body.password)
      if (user === null) throw new FST_TOKEN_AUTH_BAD_CREDENTIALS()
      const issuing = service.issueToken({ id: user.id }, {
        name: body.name !== undefined && body.name.trim() !== '' ? body.name : defaultTokenName(request.headers['user-agent']),
        scopes,
        expiresIn: o.tokenExpiresIn,
        credentials: user
      })
      // The client gets a 503 if the store is late: a token committed after that would belong to no one.
      const issued = await storeCall(request, 'login', issuing, { passErrors: true, onLate: (late) => { service.revokeToken(late.id).catch(() => {}) } })
        .catch((err: unknown) => {
          // Deactivated, deleted, or the password changed between the check and now: as if it were wrong.
          throw err instanceof TokenServiceError ? new FST_TOKEN_AUTH_BAD_CREDENTIALS() : err
        })
      service.metrics.logins.succeeded++
      service.events.emit('login.succeeded', { userId: String(user.id), tokenId: issued.id, ip: request.ip })
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      const expiresIn = issued.expiresIn
      return expiresIn === null
        ? { token: issued.token, token_type: 'Bearer' }
        : { token: issued.token, token_type: 'Bearer', expires_in: expiresIn }
    }
  })
  return check
}
