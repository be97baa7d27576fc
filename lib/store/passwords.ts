/**
 * Password hashing with scrypt (node:crypto), asynchronous: the derivation runs on libuv's
 * threadpool, never on the event loop.
 *
 * Stored format (self-describing, so parameters can be raised later and old hashes upgraded on the
 * next successful login with `needsRehash`):
 *
 *   scrypt$ln=17,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>
 *
 * Defaults follow OWASP's password storage cheat sheet: N = 2^17, r = 8, p = 1 (128 MiB of memory
 * per derivation, so `maxmem` is raised), a 16-byte random salt and a 32-byte key.
 *
 * Passwords are normalized with NFKC before hashing (NIST SP 800-63B §5.1.1.2), must be 1 to 1024
 * characters and must not contain NUL.
 *
 * This module imports nothing of the project but its error class.
 */
import * as crypto from 'node:crypto'
import { InvalidPasswordError } from './errors.js'

export interface PasswordParams {
  /** log2 of scrypt's cost N (N = 2^ln). Default 17. */
  ln: number
  /** Block size. Default 8. */
  r: number
  /** Parallelization. Default 1. */
  p: number
}

export const DEFAULT_PASSWORD_PARAMS: Readonly<PasswordParams> = Object.freeze({ ln: 17, r: 8, p: 1 })
export const PASSWORD_MIN_LENGTH = 1
export const PASSWORD_MAX_LENGTH = 1024
const SALT_BYTES = 16
const KEY_BYTES = 32
/** Bounds on what a stored hash (or a caller) may ask for, so a tampered row cannot make one
 * verification take minutes or gigabytes. */
export const PASSWORD_PARAM_LIMITS = { ln: [10, 22], r: [1, 32], p: [1, 16] } as const
const LIMITS = PASSWORD_PARAM_LIMITS

/** Checks and normalizes a password; throws InvalidPasswordError with a clear message. */
export function normalizePassword (password: string): string {
  if (typeof password !== 'string') throw new InvalidPasswordError('password must be a string')
  if (password.includes('\0')) throw new InvalidPasswordError('password must not contain NUL characters')
  const normalized = password.normalize('NFKC')
  if (normalized.length < PASSWORD_MIN_LENGTH || normalized.length > PASSWORD_MAX_LENGTH) {
    throw new InvalidPasswordError(`password must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters long`)
  }
  return normalized
}

/** Validates (and fills defaults of) scrypt parameters; throws a clear TypeError/RangeError. */
export function resolvePasswordParams (params?: Partial<PasswordParams>): PasswordParams {
  const out = { ...DEFAULT_PASSWORD_PARAMS, ...params }
  for (const key of ['ln', 'r', 'p'] as const) {
    const v = out[key]
    const [min, max] = LIMITS[key]
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`fastify-token-auth: scrypt parameter ${key} must be an integer from ${min} to ${max}, got ${String(v)}`)
    }
  }
  return { ln: out.ln, r: out.r, p: out.p }
}

function maxmemFor (params: PasswordParams): number {
  // scrypt needs 128 * N * r * p bytes (plus a little); leave room, at least 256 MiB.
  return Math.max(256 * 1024 * 1024, 2 * 128 * (2 ** params.ln) * params.r * params.p)
}

function derive (password: string, salt: Buffer, params: PasswordParams, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    crypto.scrypt(password, salt, keylen, { N: 2 ** params.ln, r: params.r, p: params.p, maxmem: maxmemFor(params) }, (err, key) => {
      if (err) reject(err)
      else resolve(key)
    })
  })
}

const b64 = (buf: Buffer): string => buf.toString('base64').replace(/=+$/, '')

interface ParsedHash { params: PasswordParams, salt: Buffer, key: Buffer }

const HASH_RE = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{22,88})\$([A-Za-z0-9+/]{43})$/

const PARAMS_RE = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$/

/** The scrypt parameters a stored hash was made with (undefined: not one of ours, or out of bounds). */
export function parseParams (stored: string): PasswordParams | undefined {
  const m = typeof stored === 'string' ? PARAMS_RE.exec(stored) : null
  if (m === null) return undefined
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  for (const key of ['ln', 'r', 'p'] as const) {
    if (params[key] < LIMITS[key][0] || params[key] > LIMITS[key][1]) return undefined
  }
  return params
}

function parseHash (stored: string): ParsedHash | null {
  if (typeof stored !== 'string') return null
  const m = HASH_RE.exec(stored)
  if (m === null) return null
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  for (const key of ['ln', 'r', 'p'] as const) {
    if (params[key] < LIMITS[key][0] || params[key] > LIMITS[key][1]) return null
  }
  // The pattern guarantees a salt of at least 16 bytes and a key of exactly 32.
  return { params, salt: Buffer.from(m[4], 'base64'), key: Buffer.from(m[5], 'base64') }
}

/** Hashes a password into the self-describing string. Throws InvalidPasswordError for a bad password. */
export async function hashPassword (password: string, params?: Partial<PasswordParams>): Promise<string> {
  const normalized = normalizePassword(password)
  const resolved = resolvePasswordParams(params)
  const salt = crypto.randomBytes(SALT_BYTES)
  const key = await derive(normalized, salt, resolved, KEY_BYTES)
  return `scrypt$ln=${resolved.ln},r=${resolved.r},p=${resolved.p}$${b64(salt)}$${b64(key)}`
}

/**
 * True when `password` matches `stored` (constant-time comparison). A password that breaks the
 * rules, or a stored string that is not a valid scrypt hash, gives false (a malformed stored hash
 * still costs one dummy derivation, so it cannot be told apart by timing).
 */
export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  let normalized: string
  try {
    normalized = normalizePassword(password)
  } catch {
    return false
  }
  const parsed = parseHash(stored)
  if (parsed === null) {
    await dummyVerify(normalized)
    return false
  }
  const key = await derive(normalized, parsed.salt, parsed.params, parsed.key.length)
  return crypto.timingSafeEqual(key, parsed.key)
}

/** True when `stored` was made with other parameters than `params` (or cannot be parsed). */
export function needsRehash (stored: string, params?: Partial<PasswordParams>): boolean {
  const parsed = parseHash(stored)
  if (parsed === null) return true
  const target = resolvePasswordParams(params)
  return parsed.params.ln !== target.ln || parsed.params.r !== target.r || parsed.params.p !== target.p
}

const DUMMY_SALT = Buffer.alloc(SALT_BYTES, 0x5a)
const DUMMY_KEY = Buffer.alloc(KEY_BYTES, 0)

/**
 * The same work as `verifyPassword` against a hash made with `params` (one scrypt derivation and a
 * constant-time comparison), always false. Used when the user is unknown or inactive, so that the
 * answer takes as long as for a known user with a wrong password.
 */
export async function dummyVerify (password: string, params?: Partial<PasswordParams>): Promise<false> {
  let normalized: string
  try {
    normalized = normalizePassword(password)
  } catch {
    return false
  }
  const key = await derive(normalized, DUMMY_SALT, resolvePasswordParams(params), KEY_BYTES)
  crypto.timingSafeEqual(key, DUMMY_KEY)
  return false
}
