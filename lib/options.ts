/**
 * Every option of the plugin, nested ones included, resolved in one place at registration, before
 * anything is opened: a frozen config, or FST_TOKEN_AUTH_INVALID_OPTION naming the option's path.
 * The caller's object is never changed.
 */
import { DRIZZLE_OPTIONS } from './providers/drizzle.js'
import { providerCheck, type TokenAuthProvider } from './providers/provider.js'
import { invalidTokensOption } from './invalid-tokens.js'
import { excludeOption } from './route-config.js'
import { routesOptions } from './routes/options.js'
import { serviceOptions } from './store/service.js'
import type { TokenAuthOptions } from './types.js'
import { bool, integer, invalid, ms, object, optional, optionError, orFalse, satisfies, seconds, string, type Check, type Checked } from './validate.js'

// What Fastify's register() itself takes, passed along in the same object.
const REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers']

const providers: Check<readonly TokenAuthProvider[]> = (value, path) => {
  if (value === undefined || value === null) return []
  const list = Array.isArray(value) ? value : [value]
  return Object.freeze(list.map((p, i) => providerCheck(p, Array.isArray(value) ? `${path}[${i}]` : path)))
}

const database = optional(satisfies<NonNullable<TokenAuthOptions['database']>>(
  (v) => typeof (v as { db?: unknown } | null)?.db === 'object',
  'createDatabase()\'s result (an object with `db`, and `listen`)'))

// An identifier Fastify can decorate with, and JavaScript can name.
const identifier = (def: string): Check<string> => string({ pattern: /^[A-Za-z_$][\w$]*$/, expected: 'a JavaScript identifier', default: def })

export const pluginOptions = object({
  provider: providers,
  database,
  drizzle: object(DRIZZLE_OPTIONS),
  service: serviceOptions,
  routes: routesOptions,
  global: bool(false),
  exclude: excludeOption,
  // A quoted-string body must not hold `"` or `\` (we do not escape) nor control characters.
  realm: string({ pattern: /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/, expected: 'printable ASCII without \'"\' or \'\\\'', default: 'api' }),
  authDecorator: identifier('auth'),
  userProperty: identifier('user'),
  maxTokenLength: integer({ min: 1, max: 65_536, default: 1024 }),
  invalidTokens: invalidTokensOption,
  maintenance: orFalse(object({ interval: ms(600_000, 1000) })),
  retryAfter: seconds(5, 0, 86_400)
}, { allow: REGISTER_KEYS, expected: 'an options object' })

export type ResolvedOptions = Checked<typeof pluginOptions>

export function resolveOptions (opts: TokenAuthOptions | undefined): ResolvedOptions {
  const o = pluginOptions(opts, '')
  if (o.provider.length === 0 && o.database === undefined) invalid('provider', 'given (or `database`): the plugin needs somewhere to resolve tokens', opts?.provider)
  if (o.exclude.length > 0 && !o.global) throw optionError('exclude', 'option exclude is for global mode: set global: true as well (without it, only the routes that ask are guarded)')
  if (o.service.slidingExpiry !== false && o.drizzle.lastUsedInterval === false) {
    throw optionError('service.slidingExpiry', 'option service.slidingExpiry needs drizzle.lastUsedInterval: the expiry moves forward when last_used_at is written')
  }
  if (o.service.slidingExpiry !== false && o.drizzle.lastUsedInterval !== false && o.service.slidingExpiry * 1000 <= o.drizzle.lastUsedInterval) {
    // The expiry moves at most once per lastUsedInterval: a shorter window would end tokens in use.
    throw optionError('service.slidingExpiry', `option service.slidingExpiry (${o.service.slidingExpiry} s) must be longer than drizzle.lastUsedInterval (${o.drizzle.lastUsedInterval} ms), or tokens in use would expire between two moves of their expiry`)
  }
  return o
}
