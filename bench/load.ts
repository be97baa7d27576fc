/** One autocannon run and its summary: what the bench's loader process runs, and bench/capacity.ts. */
import autocannon from 'autocannon'

export interface LoadOptions {
  url: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  /** When given, requests carry `Authorization: Bearer <one of these>` (no header when the list is
   * empty), each connection cycling through the list from its own random offset. */
  tokens?: string[]
  connections: number
  /** Seconds. */
  duration: number
}

export interface LoadSummary {
  requests: number
  seconds: number
  rps: number
  p50: number
  p99: number
  statusCounts: Record<string, number>
  errors: number
  timeouts: number
  loaderCpuPct: number
}

/**
 * Each connection gets the whole pool, prebuilt (no per-request setup cost in the loader), starting at
 * its own random offset: at any moment the connections ask for different tokens, so a cold cache
 * cannot answer many of them with one shared query.
 */
function perConnectionTokens (tokens: string[]) {
  const all: autocannon.Request[] = tokens.length === 0 ? [{}] : tokens.map((t) => ({ headers: { authorization: `Bearer ${t}` } }))
  return (client: { setRequests: (r: autocannon.Request[]) => void }): void => {
    const k = Math.floor(Math.random() * all.length)
    client.setRequests([...all.slice(k), ...all.slice(0, k)])
  }
}

export function runLoad (options: LoadOptions): Promise<LoadSummary> {
  const cpu = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    autocannon({
      url: options.url,
      method: options.method ?? 'GET',
      headers: options.headers,
      body: options.body,
      setupClient: options.tokens === undefined ? undefined : perConnectionTokens(options.tokens) as never,
      connections: options.connections,
      duration: options.duration,
      timeout: 30
    }, (err, result) => {
      if (err) return reject(err)
      const used = process.cpuUsage(cpu)
      const wallUs = Number(process.hrtime.bigint() - t0) / 1e3
      const statusCounts: Record<string, number> = {}
      for (const [code, v] of Object.entries((result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {})) {
        statusCounts[code] = v.count
      }
      const seconds = result.duration
      resolve({
        requests: result.requests.total,
        seconds,
        rps: result.requests.total / seconds,
        p50: result.latency.p50,
        p99: result.latency.p99,
        statusCounts,
        errors: result.errors,
        timeouts: result.timeouts,
        loaderCpuPct: 100 * (used.user + used.system) / wallUs
      })
    })
  })
}
