// The one option validator. Every options object the package reads (the plugin's and each nested one,
// a route's config.tokenAuth, the options of the classes an app may build on their own) is checked
// with these few functions, so every mistake gets the same kind of message, the code
// FST_TOKEN_AUTH_INVALID_OPTION and the option's whole path (`drizzle.cache.ttl`).
import { FST_TOKEN_AUTH_INVALID_OPTION } from './errors.js'

/** The longest delay a Node timer holds (2^31 - 1 ms): a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647

/** Checks one option's value (undefined when not given) and returns what to use. An object's check
 * carries its `shape` (and so does a wrapper of it), so the option paths can be listed. */
export type Check<T> = ((value: unknown, path: string) => T) & { shape?: Shape }
export type Checked<C> = C extends Check<infer T> ? T : never

/** Throws the option error: `fastify-token-auth: option <path> must be <expected>, got <value>`. */
export function invalid (path: string, expected: string, value: unknown): never {
  throw optionError(path, `option ${path} must be ${expected}, got ${show(value)}`)
}

/** The option error with its message (`fastify-token-auth: ` is prepended) and `option`, the path. */
export function optionError (path: string, message: string): Error & { option: string } {
  const err = new FST_TOKEN_AUTH_INVALID_OPTION(message) as unknown as Error & { option: string }
  err.option = path
  return err
}

/** A short, safe rendering of what was given (never a whole object: it may hold secrets). */
export function show (value: unknown): string {
  if (typeof value === 'string') return value.length > 60 ? JSON.stringify(value.slice(0, 60)) + '…' : JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value === null || value === undefined) return String(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  return 'an object'
}

export function join (path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`
  return path === '' ? key : `${path}.${key}`
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

interface IntegerOptions { min: number, max: number, default?: number, unit?: string }

/** A whole number from `min` to `max` (`unit` names it in the message: "milliseconds"). */
export function integer (o: IntegerOptions): Check<number> {
  const expected = `an integer from ${o.min} to ${o.max}${o.unit === undefined ? '' : ` (${o.unit})`}`
  return (value, path) => {
    if (value === undefined && o.default !== undefined) return o.default
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < o.min || value > o.max) invalid(path, expected, value)
    return value
  }
}

/** Milliseconds a timer can hold. */
export function ms (def: number | undefined, min = 1): Check<number> {
  return integer({ min, max: MAX_TIMER_MS, default: def, unit: 'milliseconds' })
}

/** Whole seconds, at most `max`. */
export function seconds (def: number | undefined, min: number, max: number): Check<number> {
  return integer({ min, max, default: def, unit: 'seconds' })
}

export function bool (def: boolean): Check<boolean> {
  return (value, path) => {
    if (value === undefined) return def
    if (typeof value !== 'boolean') invalid(path, 'true or false', value)
    return value
  }
}

export function oneOf<T extends string> (values: readonly T[], def: T): Check<T> {
  return (value, path) => {
    if (value === undefined) return def
    if (!values.includes(value as T)) invalid(path, `one of ${values.map((v) => `'${v}'`).join(', ')}`, value)
    return value as T
  }
}

interface StringOptions { pattern?: RegExp, expected: string, default?: string }

export function string (o: StringOptions): Check<string> {
  return (value, path) => {
    if (value === undefined && o.default !== undefined) return o.default
    if (typeof value !== 'string' || (o.pattern !== undefined && !o.pattern.test(value))) invalid(path, o.expected, value)
    return value
  }
}

/** `false` turns the option off; anything else is checked by `check`. */
export function orFalse<T> (check: Check<T>): Check<T | false> {
  return wraps(check, (value, path) => value === false ? false : check(value, path))
}

/** Off unless given: not given (undefined) or `false` is false; anything else is checked by `check`. */
export function offByDefault<T> (check: Check<T>): Check<T | false> {
  return wraps(check, (value, path) => value === undefined || value === false ? false : check(value, path))
}

/** Not given (undefined) stays undefined; anything else is checked by `check`. */
export function optional<T> (check: Check<T>): Check<T | undefined> {
  return wraps(check, (value, path) => value === undefined ? undefined : check(value, path))
}

/** `null` (or not given) stays null; anything else is checked by `check`. */
export function nullable<T> (check: Check<T>): Check<T | null> {
  return wraps(check, (value, path) => value === undefined || value === null ? null : check(value, path))
}

/** `outer`, carrying the shape of the object check it wraps. */
export function wraps<T> (inner: Check<unknown>, outer: Check<T>): Check<T> {
  if (inner.shape !== undefined) outer.shape = inner.shape
  return outer
}

/** Every option path a check accepts, nested ones included (`drizzle.cache.ttl`). */
export function optionPaths (check: Check<unknown>, path = ''): string[] {
  if (check.shape === undefined) return path === '' ? [] : [path]
  const nested = Object.entries(check.shape).flatMap(([key, c]) => optionPaths(c, join(path, key)))
  return path === '' ? nested : [path, ...nested]
}

/** A value that passes `test`, e.g. a provider (an object with getUser). */
export function satisfies<T> (test: (value: unknown) => boolean, expected: string): Check<T> {
  return (value, path) => {
    if (!test(value)) invalid(path, expected, value)
    return value as T
  }
}

interface ArrayOptions { min?: number, max: number, expected: string, default?: readonly unknown[] }

/** An array of `min` (default 0) to `max` items, each checked by `item`; duplicates removed; frozen. */
export function arrayOf<T> (item: Check<T>, o: ArrayOptions): Check<readonly T[]> {
  return (value, path) => {
    if (value === undefined && o.default !== undefined) return Object.freeze([...o.default]) as readonly T[]
    if (!Array.isArray(value) || value.length < (o.min ?? 0) || value.length > o.max) invalid(path, o.expected, value)
    return Object.freeze([...new Set(value.map((v, i) => item(v, join(path, i))))])
  }
}

// An interface, not a type alias: Check and Shape refer to each other.
export interface Shape { [key: string]: Check<unknown> }
export type Resolved<S extends Shape> = { readonly [K in keyof S]: Checked<S[K]> }

interface ObjectOptions {
  /** Keys that may be present and are left alone (what Fastify's register() takes beside ours). */
  allow?: readonly string[]
  /** How the message names the expected value, e.g. "false or { scopes, provider }". */
  expected?: string
}

/**
 * A plain object (or nothing: every default) with only the keys of `shape`: a misspelt key
 * (`cahce`) is refused rather than silently leaving the default in place. Returns a frozen copy;
 * the caller's object is never changed.
 */
export function object<S extends Shape> (shape: S, o: ObjectOptions = {}): Check<Resolved<S>> {
  const keys = Object.keys(shape)
  const expected = o.expected ?? `an object with the keys ${keys.join(', ')}`
  const check: Check<Resolved<S>> = (value, path) => {
    if (value === undefined) value = {}
    if (!isPlainObject(value)) invalid(path, expected, value)
    for (const key of Object.keys(value)) {
      if (!Object.hasOwn(shape, key) && !(o.allow?.includes(key) ?? false)) {
        throw optionError(join(path, key), `unknown option ${join(path, key)} (known: ${keys.map((k) => join(path, k)).join(', ')})`)
      }
    }
    const out: Record<string, unknown> = {}
    for (const key of keys) out[key] = shape[key](value[key], join(path, key))
    return Object.freeze(out) as Resolved<S>
  }
  check.shape = shape
  return check
}
