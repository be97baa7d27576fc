// OpenAPI pieces the route groups share (shown by @fastify/swagger): Fastify's error body.

export const errorSchema = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
}

/** A response entry with Fastify's error body. */
export function errorResponse (description: string): Record<string, unknown> {
  return { description, ...errorSchema }
}

/** `security` for a guarded route (and an explicit none for an open one), unless turned off. */
export function securityOf (scheme: string | false, guarded: boolean): { security?: Array<Record<string, string[]>> } {
  if (scheme === false) return {}
  return { security: guarded ? [{ [scheme]: [] }] : [] }
}

/** The answers of a route that reads a JSON body in the routes' context (its parser and body limit). */
export const bodyResponses = {
  413: errorResponse('Body too large'),
  415: errorResponse('Content-Type is not application/json')
}
