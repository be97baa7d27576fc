/**
 * A TCP proxy for outage tests: sits between the app and PostgreSQL and can be cut (every socket
 * destroyed, no longer listening: connections are refused), blackholed (connections accepted, bytes
 * held, nothing forwarded: a network partition) and restored on the same port.
 */
import * as net from 'node:net'

export type ProxyMode = 'up' | 'blackhole' | 'down'

export class TcpProxy {
  readonly #target: { host: string, port: number }
  #server: net.Server | undefined
  #port = 0
  #mode: ProxyMode = 'down'
  readonly #sockets = new Set<net.Socket>()
  readonly #held: net.Socket[] = []
  readonly #upstreams = new Set<net.Socket>()
  /** Connections accepted, in all. */
  accepted = 0

  constructor (target: { host: string, port: number }) {
    this.#target = target
  }

  get port (): number { return this.#port }
  get mode (): ProxyMode { return this.#mode }
  /** Open client-side connections (from the app). */
  get connections (): number { let n = 0; for (const s of this.#sockets) if (s.remotePort !== this.#target.port) n++; return n }

  /** A URL on the proxy for the database of `url`. */
  urlFor (url: string): string {
    const u = new URL(url)
    u.hostname = '127.0.0.1'
    u.port = String(this.#port)
    return u.toString()
  }

  /** Starts listening (on the port it had before, if any) and forwarding. */
  async up (): Promise<void> {
    this.#mode = 'up'
    if (this.#server !== undefined) return
    const server = net.createServer((client) => this.#accept(client))
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    this.#port = (server.address() as net.AddressInfo).port
  }

  /** The database is gone: every socket destroyed and the port closed (new connections are refused). */
  async down (): Promise<void> {
    this.#mode = 'down'
    const server = this.#server
    this.#server = undefined
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
    this.#held.length = 0
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** A partition: connections are accepted but nothing is forwarded, either way, on old or new ones. */
  async blackhole (): Promise<void> {
    await this.up()
    this.#mode = 'blackhole'
    for (const s of this.#sockets) s.pause()
  }

  /** Holds PostgreSQL's answers (queries still reach the server and run; their results wait). */
  holdResponses (): void {
    for (const s of this.#upstreams) s.pause()
  }

  /** Delivers the held answers. */
  releaseResponses (): void {
    for (const s of this.#upstreams) s.resume()
  }

  /** Ends a partition, everything held delivered (TCP retransmits): held connections are forwarded. */
  heal (): void {
    this.#mode = 'up'
    for (const client of this.#held.splice(0)) if (!client.destroyed) this.#forward(client)
    for (const s of this.#sockets) s.resume()
  }

  /** Ends a partition the way a firewall would that dropped the connections' state: resets them all. */
  resetAll (): void {
    this.#mode = 'up'
    this.#held.length = 0
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
  }

  #accept (client: net.Socket): void {
    this.accepted++
    this.#sockets.add(client)
    client.on('error', () => {})
    client.on('close', () => this.#sockets.delete(client))
    if (this.#mode === 'blackhole') {
      client.pause() // accepted, never answered (until heal)
      this.#held.push(client)
      return
    }
    this.#forward(client)
  }

  #forward (client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host)
    this.#sockets.add(upstream)
    this.#upstreams.add(upstream)
    upstream.on('close', () => this.#upstreams.delete(upstream))
    upstream.on('error', () => {})
    upstream.on('close', () => { this.#sockets.delete(upstream); client.destroy() })
    client.on('close', () => upstream.destroy())
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
