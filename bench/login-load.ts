/**
 * The timing mode's background load (bench/login-flood.ts runs it pinned to core 1): autocannon on
 * the protected route with a valid token, until it gets { type: 'stop' }; then it sends its summary.
 *
 *   node --import tsx bench/login-load.ts <url> <token> <connections>
 */
import autocannon from 'autocannon'

const [url, token, connections] = process.argv.slice(2)
const instance = autocannon({ url, connections: Number(connections), duration: 3600, headers: { authorization: `Bearer ${token}` } }, (err, r) => {
  process.send?.(err === null || err === undefined
    ? { type: 'done', connections: Number(connections), rps: r.requests.average, total: r.requests.total, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors }
    : { type: 'done', error: String(err) })
  process.exit(0)
})
process.send?.({ type: 'ready' })
process.on('message', (msg: { type: string }) => { if (msg.type === 'stop') instance.stop() })
