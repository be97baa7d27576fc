/**
 * Counters an app can export (to Prometheus, say) without the plugin depending on a metrics library:
 * `fastify.tokenAuth.metrics()` returns a snapshot of plain numbers, counted since the start.
 *
 *   app.get('/metrics', async () => {
 *     const m = app.tokenAuth.metrics()
 *     return `token_auth_logins_total{result="failed"} ${m.logins.failed}\n...`
 *   })
 */

export class Metrics {
  readonly logins = { succeeded: 0, failed: 0, throttled: 0 }
  /** Requests the resolver read a token for: accepted, and refused by reason. */
  readonly requests = { accepted: 0, missing: 0, malformed: 0, invalid: 0, forbidden: 0, unavailable: 0, tooManyInvalid: 0 }
  /** The database provider: answers from its cache (good and unknown tokens), and the lookups it ran. */
  readonly lookups = { cacheHits: 0, negativeHits: 0, cacheMisses: 0, queries: 0, batches: 0, replicaQueries: 0, primaryFallbacks: 0 }
  readonly tokens = { issued: 0, revoked: 0, pruned: 0 }

  snapshot (): MetricsSnapshot {
    return structuredClone({ logins: this.logins, requests: this.requests, lookups: this.lookups, tokens: this.tokens })
  }
}

export interface MetricsSnapshot {
  logins: Metrics['logins']
  requests: Metrics['requests']
  lookups: Metrics['lookups']
  tokens: Metrics['tokens']
}
