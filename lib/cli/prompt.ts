// Reading a password: from the terminal with echo off, or the first line of piped input.
import { normalizeUsername } from '../store/usernames.js'
import { CliError } from './errors.js'

const MAX_PASSWORD_INPUT = 64 * 1024

/** The password for `username`: asked twice on a terminal, else the first line of `stdin`. */
export async function readPassword (stdin: NodeJS.ReadStream, stderr: NodeJS.WritableStream, username: string, bin: string): Promise<string> {
  if (stdin.isTTY === true) {
    const first = await promptHidden(stdin, stderr, `Password for ${normalizeUsername(username)}: `)
    const second = await promptHidden(stdin, stderr, 'Repeat the password: ')
    if (first !== second) throw new CliError('the passwords do not match; nothing was changed')
    return first
  }
  const line = await readFirstLine(stdin)
  if (line === null) {
    throw new CliError(`expected the password on the first line of stdin, got nothing (e.g. printf '%s\\n' "$PASSWORD" | ${bin} user create ${normalizeUsername(username)})`)
  }
  return line
}

/** The first line of a non-terminal stream (without its line ending), or null at once-empty EOF. */
export async function readFirstLine (input: NodeJS.ReadableStream): Promise<string | null> {
  let text = ''
  let got = false
  input.setEncoding('utf8')
  for await (const chunk of input as AsyncIterable<string>) {
    got = true
    text += chunk
    const nl = text.indexOf('\n')
    if (nl >= 0) {
      text = text.slice(0, nl)
      break // ends the iteration and releases stdin
    }
    if (text.length > MAX_PASSWORD_INPUT) throw new CliError('the first line of stdin is too long to be a password')
  }
  return got ? text.replace(/\r$/, '') : null
}

/** Asks on the terminal with echo off (raw mode); Ctrl-C aborts, Backspace and Ctrl-U edit. */
function promptHidden (input: NodeJS.ReadStream, output: NodeJS.WritableStream, prompt: string): Promise<string> {
  output.write(prompt)
  input.setEncoding('utf8')
  input.setRawMode(true)
  input.resume()
  return new Promise((resolve, reject) => {
    let value = ''
    const finish = (): void => {
      input.removeListener('data', onData)
      input.setRawMode(false)
      input.pause()
      output.write('\n')
    }
    function onData (chunk: string): void {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || (ch === '\u0004' && value !== '')) {
          finish()
          resolve(value)
          return
        }
        if (ch === '\u0003' || ch === '\u0004') { // Ctrl-C, or Ctrl-D on an empty line
          finish()
          reject(new CliError('cancelled; nothing was changed', 130))
          return
        }
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('')
        else if (ch === '\u0015') value = '' // Ctrl-U
        else if (ch === '\u001b') break // an escape sequence (arrow keys...): drop the rest
        else if (ch >= ' ') value += ch
      }
    }
    input.on('data', onData)
  })
}
