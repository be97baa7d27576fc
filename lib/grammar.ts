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

/**
 * Characters a name must not hold: controls (C0, DEL, C1), format characters (bidi overrides and
 * isolates such as U+202E, zero-width ones such as U+200B, the BOM, soft hyphens), the line and
 * paragraph separators, and unassigned or private-use code points: what makes a name display as
 * another, or hide part of itself, when it is printed.
 */
export const CONTROL_CHARS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}]/u
export const CONTROL_CHARS_GLOBAL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}]/gu

/** `text` with those characters written as \u{…} escapes, for a terminal or a log. */
export function printable (text: string): string {
  return text.replace(CONTROL_CHARS_GLOBAL, (c) => `\\u{${c.codePointAt(0)!.toString(16).padStart(4, '0')}}`)
}
