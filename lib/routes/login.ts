/**
 * POST /login: a username and password for a new bearer token. Its options, body check and OpenAPI
 * schema are here; routes/plugin.ts registers it in the routes' own context.
 *
 * The body is checked by a hand-written validator, so it is checked the same way whatever Ajv options
 * the app uses (Fastify's defaults coerce numbers to strings and drop extra properties). Failed logins
 * are throttled per account and per address (throttle.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'
import { FST_TOKEN_AUTH_BAD_CREDENTIALS, FST_TOKEN_AUTH_LOGIN_THROTTLED, withHeaders } from '../errors.js'
import { CONTROL_CHARS, CONTROL_CHARS_GLOBAL, isScopeToken } from '../grammar.js'
import type { TokenAuthProvider } from '../providers/provider.js'
import { ClientBusyError, TokenServiceError } from '../store/errors.js'
import { PASSWORD_MAX_LENGTH } from '../store/passwords.js'
import { MAX_EXPIRES_IN, MAX_SCOPES, TOKEN_NAME_MAX_LENGTH } from '../store/service.js'
import { normalizeUsername, USERNAME_MAX_LENGTH } from '../store/usernames.js'
import { arrayOf, nullable, optional, satisfies, seconds } from '../validate.js'
import type { RoutesContext } from './context.js'
import { errorResponse, securityOf } from './schemas.js'
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

/**
 * The /login body check, equivalent to `loginBodySchema` with no coercion, no removal and own
 * properties only. Errors are reported like Ajv's, so Fastify answers its usual 400
 * `FST_ERR_VALIDATION` ("body/username must be string").
 */
function validateLoginBody (body: unknown): { value?: unknown, error?: FastifySchemaValidationError[] } {
  const issue = (instancePath: string, keyword: string, message: string, params: Record<string, unknown> = {}): { error: FastifySchemaValidationError[] } =>
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

function accountOf (username: string): string | null {
  try {
    return normalizeUsername(username)
  } catch {
    return null // cannot be an account: no per-account counter (the IP counter still applies)
  }
}

/** Registers POST <login> in `child`, the routes' context (which has @fastify/rate-limit when throttling). */
export function loginRoute (child: FastifyInstance, ctx: RoutesContext, url: string): void {
  const { service, options: o, auth, storeCall } = ctx
  const throttle = o.throttle === false ? undefined : new LoginThrottle(o.throttle, o.throttle.store ?? ctx.throttleStore)
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
    response: responses,
    ...securityOf(o.securityScheme, o.loginGuard !== undefined)
  }

  child.route({
    method: 'POST',
    url,
    bodyLimit: LOGIN_BODY_LIMIT,
    schema,
    validatorCompiler: loginValidatorCompiler,
    config: { tokenAuth: o.loginGuard === undefined ? false : { provider: o.loginGuard } },
    onRequest: o.loginGuard === undefined ? undefined : auth,
    handler: async function login (request: FastifyRequest, reply: FastifyReply) {
      const body = request.body as LoginBody
      let attempt: ThrottledAttempt | undefined
      if (throttle !== undefined) {
        const result: ThrottledAttempt | Throttled = await storeCall(request, 'login throttle', throttle.begin(request, accountOf(body.username)), { untimed: true })
        if ('retryAfter' in result) throw throttled(request, result.retryAfter)
        attempt = result
      }
      // A refused or timed-out attempt counts against its client like a failed one.
      const fail = async (): Promise<void> => { if (attempt !== undefined) await storeCall(request, 'login throttle', attempt.fail(), { untimed: true }) }
      let user
      try {
        user = await storeCall(request, 'login', service.verifyCredentials(body.username, body.password, { clients: attempt?.clients, trusted: attempt?.trusted }))
      } catch (err) {
        if (err instanceof ClientBusyError) {
          await fail()
          throw throttled(request, 1)
        }
        // Timed out, or refused because too many wait in all (the store itself may be down: best effort).
        if ((err as { statusCode?: number }).statusCode === 503) await attempt?.fail().catch(() => {})
        throw err
      }
      if (user === null) {
        await fail()
        request.log.info({ reason: 'bad_credentials' }, 'fastify-token-auth: login refused')
        throw new FST_TOKEN_AUTH_BAD_CREDENTIALS()
      }
      if (attempt !== undefined) await storeCall(request, 'login throttle', attempt.succeed(), { untimed: true })
      const issuing = service.issueToken({ id: user.id }, {
        name: body.name !== undefined && body.name.trim() !== '' ? body.name : defaultTokenName(request.headers['user-agent']),
        scopes: o.tokenScopes,
        expiresIn: o.tokenExpiresIn
      })
      // The client gets a 503 if the store is late: a token committed after that would belong to no one.
      const issued = await storeCall(request, 'login', issuing, { onLate: (late) => { service.revokeToken(late.id).catch(() => {}) } })
        .catch((err: unknown) => {
          // Deactivated or deleted between the password check and now: as if it were wrong.
          throw err instanceof TokenServiceError ? new FST_TOKEN_AUTH_BAD_CREDENTIALS() : err
        })
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      return o.tokenExpiresIn === null
        ? { token: issued.token, token_type: 'Bearer' }
        : { token: issued.token, token_type: 'Bearer', expires_in: o.tokenExpiresIn }
    }
  })
}
