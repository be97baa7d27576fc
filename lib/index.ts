// Public exports only.
import tokenAuth from './plugin.js'

export default tokenAuth
export { tokenAuth }
export type {
  TokenAuthOptions, TokenAuthRouteConfig, TokenAuthDecorator, TokenAuthDecoratorNames, TokenAuthRequestDecorators, TokenAuthInstanceDecorators
} from './plugin.js'

// Providers
export type { TokenAuthProvider, TokenAuthUser, TokenAuthUserTypes, DefaultTokenAuthUser } from './providers/provider.js'
export { TokenAuthUnavailableError } from './providers/provider.js'
export { SecretTokenAuthProvider } from './providers/secret.js'
export type { SecretTokenAuthProviderOptions, SecretTokenEntry } from './providers/secret.js'
export { ChainTokenAuthProvider } from './providers/chain.js'
export { DrizzleTokenAuthProvider } from './providers/drizzle.js'
export type { DrizzleTokenAuthProviderOptions } from './providers/drizzle.js'
export type { TokenCacheOptions } from './providers/token-cache.js'

// Store: database, migrations, tables, the token service
export { createDatabase, migrate, EmbeddedDatabaseBusyError, MIGRATIONS_FOLDER } from './store/database.js'
export type { Database, TokenAuthDatabase, CreateDatabaseOptions, ListenFn } from './store/database.js'
export { users, tokens, normalizeUsername, InvalidUsernameError } from './store/schema.js'
export {
  TokenService, TokenServiceError, UserExistsError, UserNotFoundError, UserInactiveError, InvalidTokenOptionsError,
  InvalidPasswordError, DEFAULT_NOTIFY_CHANNEL
} from './store/service.js'
export type { TokenServiceOptions, ServiceUser, UserInfo, IssueTokenOptions, IssuedToken, TokenInfo } from './store/service.js'
export { generateToken, checkTokenFormat, hashToken, DEFAULT_TOKEN_PREFIX } from './store/token-format.js'
export { hashPassword, verifyPassword, needsRehash, DEFAULT_PASSWORD_PARAMS } from './store/passwords.js'
export { KdfBusyError } from './store/kdf-queue.js'
export type { PasswordParams } from './store/passwords.js'

// Routes
export type { LoginRoutesOptions, LoginThrottleOptions } from './routes/login.js'

// Errors and the header parser
export {
  errorCodes,
  FST_TOKEN_AUTH_MISSING,
  FST_TOKEN_AUTH_INVALID_REQUEST,
  FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE,
  FST_TOKEN_AUTH_UNAVAILABLE,
  FST_TOKEN_AUTH_BAD_CREDENTIALS,
  FST_TOKEN_AUTH_LOGIN_THROTTLED,
  FST_TOKEN_AUTH_NOT_REVOCABLE
} from './errors.js'
export { parseBearer, hasDuplicateAuthorization, MISSING, MALFORMED } from './header.js'
