// Character rules shared by the plugin's options, the token service and the routes, so that what
// one of them accepts the others accept too. Imports nothing of the project.

/** Longest scope accepted anywhere. */
export const SCOPE_MAX_LENGTH = 128
// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** An RFC 6749 scope-token of at most SCOPE_MAX_LENGTH characters. */
export function isScopeToken (value: unknown): value is string {
  return typeof value === 'string' && value.length <= SCOPE_MAX_LENGTH && SCOPE_TOKEN.test(value)
}

/** C0 and C1 controls, DEL, and the Unicode line and paragraph separators. */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARS_GLOBAL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g
