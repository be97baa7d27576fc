// The store's errors, for a caller's mistake or a busy resource (never for a database failure, which
// is the driver's own error): one base class, a `code` each, the class name as `name`.
// TokenService, createDatabase, the password queue and the CLI throw these; the routes map them to
// answers. (The HTTP errors are in ../errors.ts.)

export type TokenServiceErrorCode =
  | 'USER_EXISTS' | 'USER_NOT_FOUND' | 'USER_INACTIVE' | 'INVALID_TOKEN_OPTIONS' | 'INVALID_USERNAME'
  | 'INVALID_PASSWORD' | 'KDF_BUSY' | 'CLIENT_BUSY' | 'TOKEN_LIMIT' | 'EMBEDDED_DATABASE_BUSY' | 'USERS_OWNED_BY_APP' | 'STORE_NOT_READY' | 'MIGRATIONS_NOT_OURS'
  | 'PARENT_TOKEN_GONE' | 'CREDENTIALS_CHANGED'

export class TokenServiceError extends Error {
  readonly code: TokenServiceErrorCode
  constructor (code: TokenServiceErrorCode, message: string) {
    super(message)
    this.name = new.target.name
    this.code = code
  }
}

const describeUser = (user: string | number): string => typeof user === 'number' ? `#${user}` : JSON.stringify(user)

export class UserExistsError extends TokenServiceError {
  constructor (username: string) {
    super('USER_EXISTS', `user ${JSON.stringify(username)} already exists`)
  }
}

export class UserNotFoundError extends TokenServiceError {
  constructor (user: string | number) {
    super('USER_NOT_FOUND', `user ${describeUser(user)} does not exist`)
  }
}

export class UserInactiveError extends TokenServiceError {
  constructor (user: string | number) {
    super('USER_INACTIVE', `user ${describeUser(user)} is deactivated`)
  }
}

/** A method for the plugin's own users table, called with the app's own users (`appUsers`). */
export class UsersOwnedByAppError extends TokenServiceError {
  constructor (method: string) {
    super('USERS_OWNED_BY_APP', `${method}: the users are the app's own (appUsers): create, change and deactivate them in the app, ` +
      'then call service.userChanged(id) so that cached tokens are checked again')
  }
}

/** The user holds as many live tokens as the service allows (maxTokensPerUser, onTokenLimit 'refuse'). */
export class TokenLimitError extends TokenServiceError {
  constructor (user: string | number, limit: number) {
    super('TOKEN_LIMIT', `user ${describeUser(user)} already holds ${limit} live tokens, the most allowed: revoke one first`)
  }
}

/** issueToken with `parentTokenId`: that token was revoked or expired (before or while this one was issued). */
export class ParentTokenGoneError extends TokenServiceError {
  constructor (id: number) {
    super('PARENT_TOKEN_GONE', `token #${id}, which this token was asked with, is revoked or expired`)
  }
}

/** issueToken with `credentials`: the user's password changed since verifyCredentials checked it. */
export class CredentialsChangedError extends TokenServiceError {
  constructor (user: string | number) {
    super('CREDENTIALS_CHANGED', `the password of user ${describeUser(user)} changed since it was checked`)
  }
}

/** A token's name, scopes or lifetime break the rules. */
export class InvalidTokenOptionsError extends TokenServiceError {
  constructor (message: string) {
    super('INVALID_TOKEN_OPTIONS', message)
  }
}

/** A username breaks the rules (see normalizeUsername). */
export class InvalidUsernameError extends TokenServiceError {
  constructor (message: string) {
    super('INVALID_USERNAME', message)
  }
}

/** A password breaks the length or character rules. */
export class InvalidPasswordError extends TokenServiceError {
  constructor (message: string) {
    super('INVALID_PASSWORD', message)
  }
}

/** Too many password checks are waiting (the login route answers 503). */
export class KdfBusyError extends TokenServiceError {
  constructor () {
    super('KDF_BUSY', 'too many password checks are waiting: retry later')
  }
}

/** One client (address or account) already has as many password checks running and waiting as it may. */
export class ClientBusyError extends TokenServiceError {
  constructor () {
    super('CLIENT_BUSY', 'too many password checks of this client at once: retry later')
  }
}

/** The embedded database's directory is held by another live process. */
export class EmbeddedDatabaseBusyError extends TokenServiceError {
  readonly dataDir: string
  readonly pid: number | undefined
  constructor (dataDir: string, pid: number | undefined) {
    super('EMBEDDED_DATABASE_BUSY',
      `the embedded database at ${dataDir} is busy: it is open in another process` +
      (pid === undefined ? '' : ` (pid ${pid})`) +
      '. PGlite allows a single process at a time: stop that process (for example the server started by `npm start`), ' +
      'or set DATABASE_URL to use a PostgreSQL server')
    this.dataDir = dataDir
    this.pid = pid
  }
}

/** The database cannot be used yet: unreachable, the login refused, a table or column missing. One line. */
export class StoreNotReadyError extends TokenServiceError {
  constructor (message: string) {
    super('STORE_NOT_READY', message)
  }
}

/** migrate() on tables that the app's own drizzle-kit migrations made (and keep up to date). */
export class MigrationsNotOursError extends TokenServiceError {
  constructor () {
    super('MIGRATIONS_NOT_OURS', 'the token tables exist but were not made by fastify-token-auth\'s migrations ' +
      '(drizzle.__token_auth_migrations is empty): they are your app\'s, kept up to date by your drizzle-kit migrations; ' +
      'do not run fastify-token-auth migrate on this database')
  }
}
