// The stored form of a username.
import { CONTROL_CHARS } from '../grammar.js'
import { InvalidUsernameError } from './errors.js'

export const USERNAME_MAX_LENGTH = 150

/**
 * The stored form of a username: NFKC-normalized, then lower-cased, so `Alice`, `ALICE` and the
 * fullwidth `ａｌｉｃｅ` are one account. Throws InvalidUsernameError when the name is not a string, is
 * empty or longer than 150 characters (after normalization), has leading or trailing whitespace, or
 * contains control characters (C0, DEL, C1) or line/paragraph separators.
 */
export function normalizeUsername (username: string): string {
  if (typeof username !== 'string') throw new InvalidUsernameError('username must be a string')
  const normalized = username.normalize('NFKC').toLowerCase()
  if (normalized.length === 0) throw new InvalidUsernameError('username must not be empty')
  if (normalized.length > USERNAME_MAX_LENGTH) {
    throw new InvalidUsernameError(`username must be at most ${USERNAME_MAX_LENGTH} characters long`)
  }
  if (CONTROL_CHARS.test(normalized)) {
    throw new InvalidUsernameError('username must not contain control, format (bidi, zero-width) or unassigned characters')
  }
  if (normalized.trim() !== normalized) {
    throw new InvalidUsernameError('username must not start or end with whitespace')
  }
  return normalized
}
