// Public exports only.
import tokenAuth from './plugin.js'

export default tokenAuth
export { tokenAuth }
export type {
  TokenAuthOptions, TokenAuthConfig, TokenAuthRouteConfig, TokenAuthDecorator, TokenAuthDecoratorNames, TokenAuthRequestDecorators, TokenAuthInstanceDecorators
} from './types.js'

// Providers
export type { TokenAuthProvider, TokenAuthUser, TokenAuthUserTypes, DefaultTokenAuthUser } from './providers/provider.js'
export { SecretTokenAuthProvider } from './providers/secret.js'
export type { SecretTokenAuthProviderOptions, SecretTokenEntry } from './providers/secret.js'
export { ChainTokenAuthProvider } from './providers/chain.js'
export { DrizzleTokenAuthProvider } from './providers/drizzle.js'
export type { DrizzleTokenAuthProviderOptions } from './providers/drizzle.js'
export type { TokenCacheOptions } from './providers/token-cache.js'

// Store: database, migrations, tables, the token service
export { createDatabase, ping } from './store/database.js'
export type { Database, TokenAuthDatabase, CreateDatabaseOptions, ListenFn } from './store/database.js'
export type { ReplicaSet } from './store/replicas.js'
export { migrate, MIGRATIONS_FOLDER } from './store/migrate.js'
export { users, tokens, throttle, events, tokenAuthTables } from './store/schema.js'
export { databaseThrottleStore, rateLimitStore } from './store/throttle-store.js'
export type { ThrottleStore, RateLimitStoreLike, Counter } from './store/throttle-store.js'
export type { TokensTable } from './store/schema.js'
export { appUsers } from './users/app-users.js'
export type { AppUsersOptions } from './users/app-users.js'
export type { UserSource, UserId } from './users/user-source.js'
export { normalizeUsername } from './store/usernames.js'
export { TokenService, MAX_EXPIRES_IN } from './store/service.js'
export type { TokenServiceOptions, ServiceUser, UserInfo, UserRef, IssueTokenOptions, IssuedToken, TokenInfo, CredentialsContext, PasswordChangeOptions, StoredEvent } from './store/service.js'
export { checkStore } from './store/check.js'
export { DEFAULT_NOTIFY_CHANNEL } from './store/notify.js'
export { generateToken, checkTokenFormat, hashToken, tokenHint, DEFAULT_TOKEN_PREFIX } from './store/token-format.js'
export { hashPassword, verifyPassword, needsRehash, DEFAULT_PASSWORD_PARAMS } from './store/passwords.js'
export type { PasswordParams } from './store/passwords.js'
export {
  TokenServiceError, UserExistsError, UserNotFoundError, UserInactiveError, InvalidTokenOptionsError, InvalidUsernameError,
  InvalidPasswordError, KdfBusyError, ClientBusyError, EmbeddedDatabaseBusyError, UsersOwnedByAppError, StoreNotReadyError, MigrationsNotOursError,
  TokenLimitError, ParentTokenGoneError, CredentialsChangedError
} from './store/errors.js'
export type { TokenServiceErrorCode } from './store/errors.js'

// Events, metrics, housekeeping
export { EVENTS_CHANNEL } from './events.js'
export type { TokenAuthEvent, TokenAuthEventType } from './events.js'
export type { MetricsSnapshot } from './metrics.js'
export { MAINTENANCE_LOCK_KEY } from './store/maintenance.js'
export type { Maintenance } from './store/maintenance.js'

// Routes
export type { LoginRoutesOptions, LoginThrottleOptions } from './routes/options.js'

// Errors, reasons and the header parser
export {
  errorCodes,
  FST_TOKEN_AUTH_MISSING,
  FST_TOKEN_AUTH_INVALID_REQUEST,
  FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE,
  FST_TOKEN_AUTH_UNAVAILABLE,
  FST_TOKEN_AUTH_TOO_MANY_INVALID_TOKENS,
  FST_TOKEN_AUTH_BAD_CREDENTIALS,
  FST_TOKEN_AUTH_LOGIN_THROTTLED,
  FST_TOKEN_AUTH_NOT_REVOCABLE,
  FST_TOKEN_AUTH_TOKEN_NOT_FOUND,
  FST_TOKEN_AUTH_TOKEN_LIMIT,
  FST_TOKEN_AUTH_BAD_REQUEST,
  FST_TOKEN_AUTH_INVALID_OPTION,
  FST_TOKEN_AUTH_ALREADY_REGISTERED,
  TokenAuthUnavailableError
} from './errors.js'
export { Reason } from './reasons.js'
export { parseBearer, hasDuplicateAuthorization } from './header.js'
