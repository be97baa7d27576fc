/**
 * The load generator, a long-lived child of bench/run.ts pinned to its own core. It receives
 * { type: 'run', id, options } over IPC, runs autocannon in this process and answers
 * { type: 'result', id, summary } (with this process's CPU use, to tell when the loader itself was
 * the bottleneck).
 */
import { runLoad, type LoadOptions } from './load.js'

export type { LoadOptions, LoadSummary } from './load.js'

process.on('message', (msg: { type: string, id: number, options: LoadOptions }) => {
  if (msg.type === 'run') {
    runLoad(msg.options).then(
      (summary) => process.send?.({ type: 'result', id: msg.id, summary }),
      (err) => process.send?.({ type: 'result', id: msg.id, error: String(err) })
    )
  } else if (msg.type === 'exit') {
    process.exit(0)
  }
})
process.send?.({ type: 'ready' })
