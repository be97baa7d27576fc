/**
 * POST /login, /logout and /logout/all, with JSON schemas (shown by @fastify/swagger).
 *
 * The routes live in their own encapsulated context, which holds:
 * - a strict JSON body parser only (no text/plain, nor any parser the app added: 415) and a small
 *   body limit (413);
 * - a hand-written body validator for /login, so the body is checked the same way whatever Ajv
 *   options the app uses (Fastify's defaults coerce numbers to strings and drop extra properties);
 * - @fastify/rate-limit with `global: false`, used only through `createRateLimit` to count failed
 *   logins (see throttle.ts). Registered here, it cannot clash with the app's own registration.
 *
 * Every write goes through the TokenService.
 */
import type {
  FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, FastifySchemaCompiler, FastifySchemaValidationError,
  onRequestHookHandler
} from 'fastify'
import rateLimit from '@fastify/rate-limit'
import {
  FST_TOKEN_AUTH_BAD_CREDENTIALS, FST_TOKEN_AUTH_LOGIN_THROTTLED, FST_TOKEN_AUTH_NOT_REVOCABLE, FST_TOKEN_AUTH_UNAVAILABLE,
  describeFailure
} from '../errors.js'
import { CONTROL_CHARS, CONTROL_CHARS_GLOBAL, isScopeToken, SCOPE_MAX_LENGTH } from '../grammar.js'
import { parseBearer } from '../header.js'
import { withTimeout } from '../timeout.js'
import type { TokenAuthProvider } from '../providers/provider.js'
import { PASSWORD_MAX_LENGTH } from '../store/passwords.js'
import { normalizeUsername, USERNAME_MAX_LENGTH } from '../store/schema.js'
import {
  MAX_EXPIRES_IN, MAX_SCOPES, TOKEN_NAME_MAX_LENGTH, TokenServiceError, type TokenService
} from '../store/service.js'
import { checkTokenFormat, hashToken } from '../store/token-format.js'
import { LoginThrottle, resolveThrottleOptions, type LoginThrottleOptions, type Throttled, type ThrottledAttempt } from './throttle.js'

export type { LoginThrottleOptions } from './throttle.js'

export interface LoginRoutesOptions {
  /** Path of the login route; `false` registers none. Default `/login`. */
  login?: string | false
  /** Path of the route revoking the presented token; `false` registers none. Default `/logout`. */
  logout?: string | false
  /** Path of the route revoking every token of the user; `false` registers none. Default `/logout/all`. */
  logoutAll?: string | false
  /** A provider /login's request must pass (as `Authorization: Bearer <app token>`), e.g. a
   * SecretTokenAuthProvider holding the native app's token. Default: /login is open. */
  loginGuard?: TokenAuthProvider
  /** Lifetime of the tokens /login issues, in seconds; `null` (default): they never expire. */
  tokenExpiresIn?: number | null
  /** Scopes of the tokens /login issues. Default none. */
  tokenScopes?: readonly string[]
  /** Failed-login throttling per account and per IP (see throttle.ts); `false` turns it off. */
  throttle?: LoginThrottleOptions | false
  /** Name of the OpenAPI security scheme (`{ type: 'http', scheme: 'bearer' }`) the app declares in
   * @fastify/swagger's `components.securitySchemes`, put on the guarded routes' `security`. Default
   * `bearerAuth`; `false` leaves `security` out (for an app that declares no such scheme: @fastify/swagger
   * fails on a `security` naming an undeclared scheme). */
  securityScheme?: string | false
  /** Longest a route waits for the token store, in milliseconds (the password check included: it
   * reads the user), before answering 503 with Retry-After, e.g. when the database accepts
   * connections but never answers. Default 10,000. */
  timeout?: number
}

/** What the plugin adds to the user's options. */
export interface LoginRoutesContext {
  service: TokenService
  /** The plugin's guard (fastify.auth). */
  auth: onRequestHookHandler
  /** The request property the plugin puts the user in. Default `user`. */
  userProperty?: string
  /** Seconds in `Retry-After` when the store is unavailable. Default 5. */
  retryAfter?: number
}

const OPTION_KEYS = new Set([
  'login', 'logout', 'logoutAll', 'loginGuard', 'tokenExpiresIn', 'tokenScopes', 'throttle', 'securityScheme', 'timeout'
])
export const DEFAULT_STORE_TIMEOUT = 10_000
/** Largest /login body accepted, in bytes: the longest legal fields, fully \u-escaped, fit. */
export const LOGIN_BODY_LIMIT = 16 * 1024
const DEFAULT_TOKEN_NAME = 'login'
const ROUTE_PATH_RE = /^\/[\x21-\x7e]*$/

interface LoginBody { username: string, password: string, name?: string }

const errorSchema = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
}

function errorResponse (description: string): Record<string, unknown> {
  return { description, ...errorSchema }
}

const loginBodySchema = {
  type: 'object',
  required: ['username', 'password'],
  additionalProperties: false,
  properties: {
    username: { type: 'string', minLength: 1, maxLength: USERNAME_MAX_LENGTH, description: 'Case-insensitive (stored NFKC, lower case)' },
    password: { type: 'string', minLength: 1, maxLength: PASSWORD_MAX_LENGTH, format: 'password' },
    name: { type: 'string', maxLength: TOKEN_NAME_MAX_LENGTH, description: 'A name for the device or purpose of the token (default: the User-Agent)' }
  }
}

const FIELDS: ReadonlyArray<[keyof LoginBody, number, number]> = [
  ['username', 1, USERNAME_MAX_LENGTH],
  ['password', 1, PASSWORD_MAX_LENGTH],
  ['name', 0, TOKEN_NAME_MAX_LENGTH]
]

type ValidationIssue = FastifySchemaValidationError

/**
 * The /login body check, equivalent to `loginBodySchema` with no coercion, no removal and own
 * properties only. Errors are reported like Ajv's, so Fastify answers its usual 400
 * `FST_ERR_VALIDATION` ("body/username must be string").
 */
function validateLoginBody (body: unknown): { value?: unknown, error?: ValidationIssue[] } {
  const issue = (instancePath: string, keyword: string, message: string, params: Record<string, unknown> = {}): { error: ValidationIssue[] } =>
    ({ error: [{ instancePath, schemaPath: `#${instancePath === '' ? '' : '/properties' + instancePath}/${keyword}`, keyword, message, params }] })
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return issue('', 'type', 'must be object', { type: 'object' })
  for (const key of Object.keys(body)) {
    if (key !== 'username' && key !== 'password' && key !== 'name') {
      // The key is not echoed: it is attacker-controlled and may be huge.
      return issue('', 'additionalProperties', 'must NOT have additional properties', {})
    }
  }
  const record = body as Record<string, unknown>
  for (const [field, min, max] of FIELDS) {
    if (!Object.hasOwn(record, field)) {
      if (field === 'name') continue
      return issue('', 'required', `must have required property '${field}'`, { missingProperty: field })
    }
    const v = record[field]
    if (typeof v !== 'string') return issue(`/${field}`, 'type', 'must be string', { type: 'string' })
    if (v.length < min) return issue(`/${field}`, 'minLength', `must NOT have fewer than ${min} characters`, { limit: min })
    if (v.length > max) return issue(`/${field}`, 'maxLength', `must NOT have more than ${max} characters`, { limit: max })
  }
  if (record.name !== undefined && CONTROL_CHARS.test(record.name as string)) {
    return issue('/name', 'pattern', 'must not contain control characters', {})
  }
  return { value: body }
}

// /login has a body schema only, so this is only ever asked for the body's validator.
const loginValidatorCompiler: FastifySchemaCompiler<unknown> = () => validateLoginBody

function checkPath (name: string, value: unknown, fallback: string): string | false {
  if (value === undefined) return fallback
  if (value === false) return false
  if (typeof value !== 'string' || !ROUTE_PATH_RE.test(value)) {
    throw new TypeError(`fastify-token-auth: routes.${name} must be a path starting with '/' (printable ASCII, no spaces) or false, got ${JSON.stringify(value)}`)
  }
  return value
}

export interface ResolvedLoginRoutesOptions {
  login: string | false
  logout: string | false
  logoutAll: string | false
  loginGuard: TokenAuthProvider | undefined
  tokenExpiresIn: number | null
  tokenScopes: string[]
  throttle: Required<LoginThrottleOptions> | false
  securityScheme: string | false
  timeout: number
}

/**
 * Reads and checks the routes' options (the plugin calls it before it opens anything, so bad
 * options leave nothing behind); the caller's object is not mutated.
 */
export function resolveLoginRoutesOptions (opts: LoginRoutesOptions): ResolvedLoginRoutesOptions {
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new TypeError('fastify-token-auth: the routes option must be an object or false')
  for (const key of Object.keys(opts)) {
    if (!OPTION_KEYS.has(key)) {
      throw new TypeError(`fastify-token-auth: unknown option routes.${key} (known: login, logout, logoutAll, loginGuard, tokenExpiresIn, tokenScopes, throttle, securityScheme, timeout)`)
    }
  }
  const login = checkPath('login', opts.login, '/login')
  const logout = checkPath('logout', opts.logout, '/logout')
  const logoutAll = checkPath('logoutAll', opts.logoutAll, '/logout/all')
  const paths = [login, logout, logoutAll].filter((p) => p !== false)
  if (new Set(paths).size !== paths.length) throw new TypeError(`fastify-token-auth: routes.login, routes.logout and routes.logoutAll must differ, got ${paths.join(', ')}`)

  const loginGuard = opts.loginGuard ?? undefined
  if (loginGuard !== undefined && typeof (loginGuard as TokenAuthProvider)?.getUser !== 'function') {
    throw new TypeError('fastify-token-auth: routes.loginGuard must be a provider (an object with getUser(token, request)), e.g. new SecretTokenAuthProvider({ tokens: [appToken] })')
  }
  const tokenExpiresIn = opts.tokenExpiresIn ?? null
  if (tokenExpiresIn !== null && (typeof tokenExpiresIn !== 'number' || !Number.isSafeInteger(tokenExpiresIn) || tokenExpiresIn < 1 || tokenExpiresIn > MAX_EXPIRES_IN)) {
    throw new TypeError(`fastify-token-auth: routes.tokenExpiresIn must be null (never) or a whole number of seconds from 1 to ${MAX_EXPIRES_IN}, got ${String(tokenExpiresIn)}`)
  }
  const scopes = opts.tokenScopes ?? []
  if (!Array.isArray(scopes) || scopes.length > MAX_SCOPES || !scopes.every(isScopeToken)) {
    throw new TypeError(`fastify-token-auth: routes.tokenScopes must be an array of at most ${MAX_SCOPES} RFC 6749 scope tokens of at most ${SCOPE_MAX_LENGTH} characters (printable ASCII, no space, '"' or '\\')`)
  }
  const securityScheme = opts.securityScheme ?? 'bearerAuth'
  if (securityScheme !== false && (typeof securityScheme !== 'string' || securityScheme === '')) {
    throw new TypeError('fastify-token-auth: routes.securityScheme must be the name of an OpenAPI security scheme or false')
  }
  const timeout = opts.timeout ?? DEFAULT_STORE_TIMEOUT
  if (typeof timeout !== 'number' || !Number.isSafeInteger(timeout) || timeout < 1) {
    throw new TypeError(`fastify-token-auth: routes.timeout must be a positive integer number of milliseconds, got ${String(timeout)}`)
  }
  return {
    login,
    logout,
    logoutAll,
    loginGuard,
    tokenExpiresIn,
    tokenScopes: [...new Set(scopes)],
    throttle: resolveThrottleOptions(opts.throttle),
    securityScheme,
    timeout
  }
}

/** A token name from the User-Agent: control characters dropped, trimmed, capped; else `login`. */
export function defaultTokenName (userAgent: string | undefined): string {
  if (typeof userAgent !== 'string') return DEFAULT_TOKEN_NAME
  const name = userAgent.replace(CONTROL_CHARS_GLOBAL, '').trim().slice(0, TOKEN_NAME_MAX_LENGTH).trim()
  return name === '' ? DEFAULT_TOKEN_NAME : name
}

class StoreTimeoutError extends Error {
  constructor (ms: number) {
    super(`the token store did not answer within ${ms} ms`)
    this.name = 'StoreTimeoutError'
  }
}

function accountOf (username: string): string | null {
  try {
    return normalizeUsername(username)
  } catch {
    return null // cannot be an account: no per-account counter (the IP counter still applies)
  }
}

/**
 * Registers the routes in an encapsulated child context of `fastify` (so under the prefix of the
 * context the plugin was registered in).
 */
export function loginRoutes (fastify: FastifyInstance, opts: LoginRoutesOptions & LoginRoutesContext): void {
  const { service, auth, userProperty = 'user', retryAfter = 5, ...routeOptions } = opts
  if (typeof service?.verifyCredentials !== 'function') throw new TypeError('fastify-token-auth: the login routes need a TokenService (give the plugin a `database`)')
  if (typeof auth !== 'function') throw new TypeError('fastify-token-auth: the login routes need the plugin\'s auth hook')
  if (!Number.isSafeInteger(retryAfter) || retryAfter < 0) throw new TypeError('fastify-token-auth: retryAfter must be a whole number of seconds')
  const o = resolveLoginRoutesOptions(routeOptions)
  if (o.login === false && o.logout === false && o.logoutAll === false) return
  const unavailableHeaders = { 'retry-after': String(retryAfter) }
  // `security` on the guarded routes (and an explicit none on an open /login), unless turned off.
  const security = o.securityScheme === false ? undefined : [{ [o.securityScheme]: [] }]
  const openSecurity = o.securityScheme === false ? undefined : []

  /** The store's answer, or a rejection once `o.timeout` ms have passed (the call itself goes on). */
  const inTime = <T>(promise: Promise<T>): Promise<T> => withTimeout(promise, o.timeout, () => new StoreTimeoutError(o.timeout))

  function unavailable (request: FastifyRequest, err: unknown, what: string): FastifyError {
    request.log.error({ failure: describeFailure(err) }, `fastify-token-auth: ${what}: token store unavailable`)
    const e = new FST_TOKEN_AUTH_UNAVAILABLE() as FastifyError & { headers?: Record<string, string> }
    e.headers = unavailableHeaders
    return e
  }

  fastify.register(async function tokenAuthLoginRoutes (child) {
    // Only JSON, parsed the safe way (prototype poisoning refused), whatever parsers the app added.
    child.removeAllContentTypeParsers()
    child.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT }, child.getDefaultJsonParser('error', 'error'))

    let throttle: LoginThrottle | undefined
    if (o.login !== false && o.throttle !== false) {
      await child.register(rateLimit, { global: false })
      throttle = new LoginThrottle(child, o.throttle)
    }

    if (o.login !== false) {
      const responses: Record<string, unknown> = {
        200: {
          description: 'A new bearer token (shown once)',
          type: 'object',
          required: ['token', 'token_type'],
          additionalProperties: false,
          properties: {
            token: { type: 'string' },
            token_type: { type: 'string', enum: ['Bearer'] },
            ...(o.tokenExpiresIn === null ? {} : { expires_in: { type: 'integer', description: 'Lifetime of the token in seconds' } })
          }
        },
        400: errorResponse('Malformed body'),
        401: errorResponse(o.loginGuard === undefined ? 'Bad credentials' : 'Bad credentials, or a missing or unknown app token'),
        413: errorResponse('Body too large'),
        415: errorResponse('Content-Type is not application/json'),
        ...(throttle === undefined ? {} : { 429: errorResponse('Too many failed logins for this account or address (see Retry-After)') }),
        503: errorResponse('The token store is unavailable (see Retry-After)')
      }
      const schema: FastifySchema & Record<string, unknown> = {
        tags: ['auth'],
        summary: 'Log in: exchange a username and password for a new bearer token',
        description: 'Every successful login issues a new token (one per device). Bad credentials, unknown users and deactivated users all get the same 401.',
        body: loginBodySchema,
        response: responses
      }
      const loginSecurity = o.loginGuard === undefined ? openSecurity : security
      if (loginSecurity !== undefined) schema.security = loginSecurity

      child.route({
        method: 'POST',
        url: o.login,
        bodyLimit: LOGIN_BODY_LIMIT,
        schema,
        validatorCompiler: loginValidatorCompiler,
        config: { tokenAuth: o.loginGuard === undefined ? false : { provider: o.loginGuard } },
        onRequest: o.loginGuard === undefined ? undefined : auth,
        handler: async function login (request: FastifyRequest, reply: FastifyReply) {
          const body = request.body as LoginBody
          let attempt: ThrottledAttempt | undefined
          if (throttle !== undefined) {
            let result: ThrottledAttempt | Throttled
            try {
              result = await throttle.begin(request, accountOf(body.username))
            } catch (err) {
              throw unavailable(request, err, 'login throttle')
            }
            if ('retryAfter' in result) {
              request.log.info({ reason: 'login_throttled' }, 'fastify-token-auth: login refused: too many failed attempts')
              const e = new FST_TOKEN_AUTH_LOGIN_THROTTLED() as FastifyError & { headers?: Record<string, string> }
              e.headers = { 'retry-after': String(result.retryAfter) }
              throw e
            }
            attempt = result
          }
          try {
            let user
            try {
              user = await inTime(service.verifyCredentials(body.username, body.password))
            } catch (err) {
              throw unavailable(request, err, 'login')
            }
            if (user === null) {
              if (attempt !== undefined) {
                try {
                  await attempt.fail()
                } catch (err) {
                  throw unavailable(request, err, 'login throttle')
                }
              }
              request.log.info({ reason: 'bad_credentials' }, 'fastify-token-auth: login refused')
              throw new FST_TOKEN_AUTH_BAD_CREDENTIALS()
            }
            let issued
            const issuing = service.issueToken(user.id, {
              name: body.name !== undefined && body.name.trim() !== '' ? body.name : defaultTokenName(request.headers['user-agent']),
              scopes: o.tokenScopes,
              expiresIn: o.tokenExpiresIn
            })
            try {
              issued = await inTime(issuing)
            } catch (err) {
              // Deactivated or deleted between the password check and now: as if it were wrong.
              if (err instanceof TokenServiceError) throw new FST_TOKEN_AUTH_BAD_CREDENTIALS()
              if (err instanceof StoreTimeoutError) {
                // The client gets a 503: a token committed after that would belong to no one.
                issuing.then((late) => service.revokeToken(late.id), () => {}).catch(() => {})
              }
              throw unavailable(request, err, 'login')
            }
            reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
            return o.tokenExpiresIn === null
              ? { token: issued.token, token_type: 'Bearer' }
              : { token: issued.token, token_type: 'Bearer', expires_in: o.tokenExpiresIn }
          } finally {
            attempt?.done()
          }
        }
      })
    }

    const noContent = { description: 'Revoked', type: 'null' }
    const logoutResponses = {
      204: noContent,
      400: errorResponse('Malformed Authorization header'),
      401: errorResponse('Missing, unknown, expired or revoked token'),
      403: errorResponse('The token does not come from the token store (e.g. a static secret token)'),
      503: errorResponse('The token store is unavailable (see Retry-After)')
    }

    /** The presented token, when it is one of the store's (else the request came with another provider's). */
    function storeToken (request: FastifyRequest): string {
      const token = parseBearer(request.raw.headers.authorization, 1 << 16)
      if (typeof token !== 'string' || !checkTokenFormat(token, service.prefix)) throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
      return token
    }

    if (o.logout !== false) {
      child.route({
        method: 'POST',
        url: o.logout,
        schema: {
          tags: ['auth'],
          summary: 'Log out: revoke the token this request carries',
          ...(security === undefined ? {} : { security }),
          response: logoutResponses
        } as FastifySchema,
        onRequest: auth,
        handler: async function logout (request: FastifyRequest, reply: FastifyReply) {
          const token = storeToken(request)
          try {
            // Idempotent: a token revoked meanwhile by a concurrent call is just as logged out.
            await inTime(service.revokeTokenByHash(hashToken(token)))
          } catch (err) {
            throw unavailable(request, err, 'logout')
          }
          return reply.code(204).send()
        }
      })
    }

    if (o.logoutAll !== false) {
      child.route({
        method: 'POST',
        url: o.logoutAll,
        schema: {
          tags: ['auth'],
          summary: 'Log out everywhere: revoke every token of the user',
          ...(security === undefined ? {} : { security }),
          response: logoutResponses
        } as FastifySchema,
        onRequest: auth,
        handler: async function logoutAll (request: FastifyRequest, reply: FastifyReply) {
          storeToken(request)
          const user = (request as unknown as Record<string, unknown>)[userProperty] as { id?: unknown } | null
          if (typeof user?.id !== 'number') throw new FST_TOKEN_AUTH_NOT_REVOCABLE()
          try {
            await inTime(service.revokeAllTokens(user.id))
          } catch (err) {
            throw unavailable(request, err, 'logout')
          }
          return reply.code(204).send()
        }
      })
    }
  })
}
