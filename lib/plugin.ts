// The plugin: wiring only. Options are resolved (options.ts), the store is made on `database`, then
// the decorators, the per-route resolver (resolver.ts, attached by route-config.ts), the guard
// (guard.ts) and the login routes (routes/) are put in place.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { FST_TOKEN_AUTH_ALREADY_REGISTERED, logFailure, retryAfterHeaders } from './errors.js'
import { createGuard } from './guard.js'
import { InvalidTokenLimiter } from './invalid-tokens.js'
import { resolveOptions, type ResolvedOptions } from './options.js'
import { ChainTokenAuthProvider } from './providers/chain.js'
import { DrizzleTokenAuthProvider } from './providers/drizzle.js'
import type { TokenAuthProvider } from './providers/provider.js'
import { kDetail, kReason, Reason } from './reasons.js'
import { createResolver, type ResolverContext } from './resolver.js'
import { routeConfigHook, unseenGuard, type RouteConfigContext } from './route-config.js'
import { createStoreCall, createStoreUser } from './routes/context.js'
import { registerRoutes } from './routes/plugin.js'
import { checkStore } from './store/check.js'
import { startMaintenance } from './store/maintenance.js'
import { events, throttle } from './store/schema.js'
import { databaseThrottleStore, type ThrottleStore } from './store/throttle-store.js'
import { Metrics } from './metrics.js'
import { TokenService } from './store/service.js'
import type { TokenAuthDecorator, TokenAuthOptions } from './types.js'
import { optionError } from './validate.js'

async function tokenAuth (fastify: FastifyInstance, opts: TokenAuthOptions): Promise<void> {
  const o = resolveOptions(opts)
  checkDecorators(fastify, o)
  if (o.maintenance !== false && (o.database as { sql?: { options?: { max?: number } } } | undefined)?.sql?.options?.max === 1) {
    // A round holds its lock in a transaction while its deletes take another connection.
    throw optionError('maintenance', 'option maintenance needs a pool of at least 2 connections (createDatabase(url, { max: 2 }) or more), or maintenance: false')
  }

  const store = o.database === undefined ? undefined : await openStore(o, o.database)
  const metrics = store?.service.metrics ?? new Metrics()
  const maintenance = store === undefined || o.maintenance === false
    ? null
    : startMaintenance({
      service: store.service,
      throttle: store.throttle,
      interval: o.maintenance.interval,
      embedded: isEmbedded(o.database!),
      onError: (err) => logFailure(fastify.log, err, 'maintenance round failed')
    })
  const decorator: TokenAuthDecorator = Object.freeze({
    service: store?.service ?? null,
    provider: store?.provider ?? null,
    maintenance,
    metrics: () => metrics.snapshot()
  })
  // The database provider goes first: its format check refuses any other token synchronously and
  // without a query, while a secret list would hash every database token before passing it on.
  const provider = combine(store === undefined ? o.provider : [store.provider, ...o.provider])

  const guard = createGuard({ realm: o.realm, retryAfter: o.retryAfter, authName: o.authDecorator })
  const resolver: ResolverContext = {
    userKey: o.userProperty,
    maxTokenLength: o.maxTokenLength,
    onFailure: failureLog(),
    invalidTokens: o.invalidTokens === false ? undefined : new InvalidTokenLimiter(o.invalidTokens),
    requests: metrics.requests
  }
  const makeResolver = createResolver.bind(null, resolver)

  fastify.decorateRequest(o.userProperty, null)
  fastify.decorateRequest(kReason, Reason.NOT_RESOLVED)
  fastify.decorateRequest(kDetail, null)
  fastify.decorate(o.authDecorator, guard.auth)
  fastify.decorate('tokenAuth', decorator)
  const routes: RouteConfigContext = {
    provider,
    resolve: makeResolver(provider),
    makeResolver,
    auth: guard.auth,
    realm: o.realm,
    global: o.global,
    exclude: o.exclude,
    securityScheme: o.routes === false ? 'bearerAuth' : o.routes.securityScheme
  }
  fastify.addHook('onRoute', routeConfigHook(routes))
  if (o.global) fastify.addHook('onRequest', unseenGuard(routes))

  if (store !== undefined && o.routes !== false) {
    registerRoutes(fastify, {
      service: store.service,
      options: o.routes,
      auth: guard.auth,
      userProperty: o.userProperty,
      storeUser: createStoreUser(o.userProperty, (user) => store.provider.owns(user)),
      realm: o.realm,
      throttleStore: store.throttle,
      storeCall: createStoreCall(o.routes.timeout, retryAfterHeaders(o.retryAfter), o.realm)
    })
  }
  fastify.addHook('onClose', async () => {
    await maintenance?.stop()
    await provider.close?.()
    await store?.service.events.close()
  })
  await provider.ready?.()
}

function checkDecorators (fastify: FastifyInstance, o: ResolvedOptions): void {
  if (fastify.hasRequestDecorator(kReason)) {
    throw new FST_TOKEN_AUTH_ALREADY_REGISTERED()
  }
  // Fastify's own message for a clash does not say which option renames ours.
  if (fastify.hasDecorator(o.authDecorator)) {
    throw optionError('authDecorator', `fastify.${o.authDecorator} is already decorated (by @fastify/auth?); pick another name with the \`authDecorator\` option`)
  }
  if (fastify.hasRequestDecorator(o.userProperty)) {
    throw optionError('userProperty', `request.${o.userProperty} is already decorated (by @fastify/jwt?); pick another name with the \`userProperty\` option`)
  }
}

/** The service, then (once the database is known to hold what it needs) the provider, which LISTENs. */
async function openStore (o: ResolvedOptions, database: NonNullable<ResolvedOptions['database']>): Promise<{ service: TokenService, provider: DrizzleTokenAuthProvider, throttle: ThrottleStore | undefined }> {
  const service = new TokenService(database, o.service)
  // The tables besides the tokens and users: the throttle's when a route checks passwords with its
  // counters in the database (not elsewhere), the events' when they are written.
  const r = o.routes
  const checksPasswords = r !== false && (r.login !== false || (r.password !== false && service.users.kind === 'builtin'))
  const dbThrottle = checksPasswords && r.throttle !== false && r.throttle.store === undefined
  const more = [...(dbThrottle ? [throttle] : []), ...(o.service.events.table ? [events] : [])]
  await checkStore(service.db, service.users, database.url, more)
  const provider = new DrizzleTokenAuthProvider({
    ...o.drizzle,
    db: database.db,
    listen: database.listen,
    replicas: database.replicas,
    service,
    notifyChannel: service.notifyChannel
  })
  return { service, provider, throttle: dbThrottle ? databaseThrottleStore(service.db) : undefined }
}

/** The embedded database (PGlite): createDatabase's kind, or a drizzle db on a PGlite client. */
function isEmbedded (database: NonNullable<ResolvedOptions['database']>): boolean {
  const kind = (database as { kind?: unknown }).kind
  if (kind !== undefined) return kind === 'pglite'
  return (database.db as unknown as { $client?: { constructor?: { name?: string } } }).$client?.constructor?.name === 'PGlite'
}

function combine (providers: readonly TokenAuthProvider[]): TokenAuthProvider {
  return providers.length === 1 ? providers[0] : new ChainTokenAuthProvider(providers)
}

/** Logs provider failures at most once a second: during an outage every request fails the same way. */
function failureLog (): ResolverContext['onFailure'] {
  let last = 0
  let unlogged = 0
  return (request: FastifyRequest, err: unknown) => {
    const now = Date.now()
    if (now - last < 1000) {
      unlogged++
      return
    }
    last = now
    logFailure(request.log, err, 'token provider failed', { alsoFailedSinceLastLog: unlogged })
    unlogged = 0
  }
}

export default fp(tokenAuth, { fastify: '5.x', name: 'fastify-token-auth' })
