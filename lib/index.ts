import tokenAuth from './plugin.js'

export default tokenAuth
export { tokenAuth }
export type { TokenAuthOptions, TokenAuthRouteConfig } from './plugin.js'
export type { TokenAuthProvider, TokenAuthUser, TokenAuthUserTypes, DefaultTokenAuthUser } from './providers/provider.js'
export { TokenAuthUnavailableError } from './providers/provider.js'
export { SecretTokenAuthProvider } from './providers/secret.js'
export type { SecretTokenAuthProviderOptions, SecretTokenEntry } from './providers/secret.js'
export { ChainTokenAuthProvider } from './providers/chain.js'
export {
  errorCodes,
  FST_TOKEN_AUTH_MISSING,
  FST_TOKEN_AUTH_INVALID_REQUEST,
  FST_TOKEN_AUTH_INVALID_TOKEN,
  FST_TOKEN_AUTH_INSUFFICIENT_SCOPE,
  FST_TOKEN_AUTH_UNAVAILABLE
} from './errors.js'
export { parseBearer, hasDuplicateAuthorization, MISSING, MALFORMED } from './header.js'
