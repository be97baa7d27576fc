/** The bench's scenario names and the configuration run.ts passes to each server (BENCH_CONFIG). */
export const SCENARIOS = [
  'bare', 'bare2', 'noop', 'hash-only', 'bearer-auth', 'secret', 'db-warm', 'db-cold', 'naive',
  'reject-missing', 'reject-bad-checksum', 'reject-unknown-cold', 'reject-unknown-neg',
  'login'
] as const
export type Scenario = typeof SCENARIOS[number]

export interface ServerConfig {
  /** The bench database's URL (database scenarios). */
  url?: string
  /** The 10 secrets of the SecretTokenAuthProvider scenario. */
  secrets?: string[]
  /** The static key of the @fastify/bearer-auth scenario. */
  staticKey?: string
  /** postgres.js pool size for database scenarios. */
  poolSize?: number
  /** ms after which an idle pool connection closes (0: never): run.ts's stopped servers then hold
   * only their LISTEN connection. */
  idleTimeout?: number
  /** Read replicas' URLs for database scenarios (createDatabase's `replicas`). */
  replicas?: string[]
}
