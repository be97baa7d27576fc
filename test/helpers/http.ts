/**
 * What most tests need to talk to an app: the Authorization header for a token, a logger that keeps
 * every line (to check what is logged and that no secret is), and an app with the plugin registered
 * that closes itself at the end of the test.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../../lib/index.js'

/** `{ authorization: 'Bearer <token>' }`. */
export function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

export interface LogLine {
  level: number
  msg?: string
  err?: { code?: string, message?: string, type?: string, stack?: string }
  failure?: { code?: string, message?: string, type?: string }
  [k: string]: unknown
}

export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 } as const

/** A Fastify `logger` option that keeps every line: parsed in `lines`, raw in `text()`. */
export function logCapture (level: keyof typeof LEVEL = 'trace'): { lines: LogLine[], text: () => string, logger: FastifyServerOptions['logger'] } {
  const lines: LogLine[] = []
  const raw: string[] = []
  return {
    lines,
    text: () => raw.join(''),
    logger: { level, stream: { write (s: string) { raw.push(s); lines.push(JSON.parse(s)) } } }
  }
}

/** A Fastify app with the plugin registered with `opts`, closed when `t` ends. */
export async function appWith (t: Test, opts: TokenAuthOptions, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(server)
  t.teardown(() => app.close())
  await app.register(tokenAuth, opts)
  return app
}
