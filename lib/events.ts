/**
 * The audit trail: structured events published on a `node:diagnostics_channel` channel (as undici and
 * Fastify publish theirs) and, when asked, appended to the `token_auth_events` table. No event ever
 * holds a token, a token hash or a password: only ids, names, scopes, an address and a reason.
 *
 *   import diagnostics from 'node:diagnostics_channel'
 *   diagnostics.subscribe('fastify-token-auth:event', (event) => { ... })
 */
import diagnostics from 'node:diagnostics_channel'

export const EVENTS_CHANNEL = 'fastify-token-auth:event'

export type TokenAuthEventType =
  | 'login.succeeded' | 'login.failed' | 'login.throttled'
  | 'token.issued' | 'token.revoked' | 'token.expired' | 'tokens.pruned'
  | 'user.created' | 'user.deactivated' | 'password.changed'

export interface TokenAuthEvent {
  type: TokenAuthEventType
  at: Date
  /** The user's id, as text (whatever the type of the users' ids). */
  userId?: string
  tokenId?: number
  /** The client's address, for the events of a request. */
  ip?: string
  /** What else the event says: a token's name and scopes, a login's reason, a count. Never a secret. */
  detail?: Record<string, unknown>
}

/** Writes events somewhere (the events table); called in batches, off the request path. */
export type EventSink = (events: readonly TokenAuthEvent[]) => Promise<void>

const channel = diagnostics.channel(EVENTS_CHANNEL)
const MAX_PENDING = 10_000

export class EventLog {
  readonly #sink: EventSink | undefined
  readonly #pending: TokenAuthEvent[] = []
  readonly #onError: (err: unknown) => void
  #timer: NodeJS.Timeout | undefined
  #flushing: Promise<void> | undefined

  /** @param sink where to write events (none: the channel only); @param onError told of a failed write */
  constructor (sink?: EventSink, onError: (err: unknown) => void = () => {}) {
    this.#sink = sink
    this.#onError = onError
  }

  /** Publishes an event on the channel, and queues it for the sink (written within 200 ms). */
  emit (type: TokenAuthEventType, fields: Omit<TokenAuthEvent, 'type' | 'at'> = {}): void {
    const event: TokenAuthEvent = { type, at: new Date(), ...fields }
    if (channel.hasSubscribers) channel.publish(event)
    if (this.#sink === undefined) return
    if (this.#pending.length >= MAX_PENDING) this.#pending.shift() // a sink down for long: keep the newest
    this.#pending.push(event)
    this.#timer ??= setTimeout(() => { this.#timer = undefined; this.flush().catch(() => {}) }, 200).unref()
  }

  /** Writes what is queued (the sink's failures are reported, and the events kept for the next try). */
  async flush (): Promise<void> {
    await this.#flushing
    if (this.#sink === undefined || this.#pending.length === 0) return
    const batch = this.#pending.splice(0, 1000)
    this.#flushing = this.#sink(batch).then(() => {}, (err: unknown) => {
      this.#pending.unshift(...batch.slice(0, MAX_PENDING - this.#pending.length))
      this.#onError(err)
    })
    await this.#flushing
    this.#flushing = undefined
    if (this.#pending.length > 0) await this.flush()
  }

  async close (): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    await this.flush().catch(() => {})
  }
}
