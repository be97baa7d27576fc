/**
 * The routes' JSON bodies, checked by hand rather than by the app's Ajv: the same way whatever Ajv
 * options the app uses (Fastify's defaults coerce numbers to strings and drop extra properties), with
 * no coercion, no removal and own properties only. Errors read like Ajv's, so Fastify answers its
 * usual 400 `FST_ERR_VALIDATION` ("body/username must be string").
 */
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'
import { CONTROL_CHARS, isScopeToken } from '../grammar.js'

export type Field =
  | { type: 'string', min: number, max: number, required?: boolean, plain?: boolean }
  | { type: 'integer', min: number, max: number, required?: boolean }
  | { type: 'scopes', max: number, required?: boolean }

type Result = { value?: unknown, error?: FastifySchemaValidationError[] }

function issue (instancePath: string, keyword: string, message: string, params: Record<string, unknown> = {}): Result {
  return { error: [{ instancePath, schemaPath: `#${instancePath === '' ? '' : '/properties' + instancePath}/${keyword}`, keyword, message, params }] }
}

function checkField (path: string, f: Field, v: unknown): Result | undefined {
  if (f.type === 'string') {
    if (typeof v !== 'string') return issue(path, 'type', 'must be string', { type: 'string' })
    if (v.length < f.min) return issue(path, 'minLength', `must NOT have fewer than ${f.min} characters`, { limit: f.min })
    if (v.length > f.max) return issue(path, 'maxLength', `must NOT have more than ${f.max} characters`, { limit: f.max })
    if (f.plain === true && CONTROL_CHARS.test(v)) return issue(path, 'pattern', 'must not contain control, format (bidi, zero-width) or unassigned characters')
    return undefined
  }
  if (f.type === 'integer') {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) return issue(path, 'type', 'must be integer', { type: 'integer' })
    if (v < f.min) return issue(path, 'minimum', `must be >= ${f.min}`, { limit: f.min })
    if (v > f.max) return issue(path, 'maximum', `must be <= ${f.max}`, { limit: f.max })
    return undefined
  }
  if (!Array.isArray(v)) return issue(path, 'type', 'must be array', { type: 'array' })
  if (v.length > f.max) return issue(path, 'maxItems', `must NOT have more than ${f.max} items`, { limit: f.max })
  const bad = v.findIndex((s) => !isScopeToken(s))
  if (bad >= 0) return issue(`${path}/${bad}`, 'pattern', 'must be an RFC 6749 scope token')
  return undefined
}

/** A validator compiler for a route whose only schema is a body of these fields. */
export function bodyValidator (fields: Record<string, Field>): FastifySchemaCompiler<unknown> {
  const names = new Set(Object.keys(fields))
  const validate = (body: unknown): Result => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return issue('', 'type', 'must be object', { type: 'object' })
    // An unknown key is not echoed: it is attacker-controlled and may be huge.
    for (const key of Object.keys(body)) if (!names.has(key)) return issue('', 'additionalProperties', 'must NOT have additional properties', {})
    const record = body as Record<string, unknown>
    for (const [name, f] of Object.entries(fields)) {
      if (!Object.hasOwn(record, name)) {
        if (f.required === true) return issue('', 'required', `must have required property '${name}'`, { missingProperty: name })
        continue
      }
      const bad = checkField(`/${name}`, f, record[name])
      if (bad !== undefined) return bad
    }
    return { value: body }
  }
  return () => validate
}

/** The JSON schema of such a body, for the OpenAPI document. */
export function bodySchema (fields: Record<string, Field & { description?: string, format?: string }>): Record<string, unknown> {
  const properties: Record<string, unknown> = {}
  for (const [name, f] of Object.entries(fields)) {
    const doc = { ...(f.description === undefined ? {} : { description: f.description }), ...(f.format === undefined ? {} : { format: f.format }) }
    properties[name] = f.type === 'string'
      ? { type: 'string', minLength: f.min, maxLength: f.max, ...doc }
      : f.type === 'integer'
        ? { type: 'integer', minimum: f.min, maximum: f.max, ...doc }
        : { type: 'array', maxItems: f.max, items: { type: 'string' }, ...doc }
  }
  return { type: 'object', required: Object.keys(fields).filter((k) => fields[k].required === true), additionalProperties: false, properties }
}
