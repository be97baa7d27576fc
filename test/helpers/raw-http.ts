/**
 * A request line sent byte for byte over a socket: no client (fetch, inject) normalizes the path
 * first, so `/docs/../private` reaches the server as written.
 */
import net from 'node:net'

export interface RawResponse { status: number, headers: Record<string, string>, body: string }

export function rawRequest (port: number, requestLine: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`${requestLine} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`)
    })
    let buf = ''
    s.setEncoding('latin1')
    s.on('data', (c: string) => { buf += c })
    s.on('end', () => {
      const at = buf.indexOf('\r\n\r\n')
      const head = buf.slice(0, at)
      const status = Number(head.split(' ')[1])
      const lines = head.split('\r\n').slice(1)
      const hdrs = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
      resolve({ status, headers: hdrs, body: buf.slice(at + 4) })
    })
    s.on('error', reject)
  })
}
