// The CLI's configuration: the module an app also gives the plugin its store options from, so the CLI
// hashes passwords and makes tokens exactly as the app does (one config, read by both).
//
//   // token-auth.config.js
//   export default { service: { prefix: 'acme', passwordParams: { ln: 16 } } }
//
//   await app.register(tokenAuth, { database, ...config })      // the app
//   fastify-token-auth --config token-auth.config.js ...         // the CLI (or TOKEN_AUTH_CONFIG)
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { TokenAuthConfig } from '../types.js'
import { isPlainObject } from '../validate.js'
import { CliError } from './errors.js'

export type CliConfig = TokenAuthConfig

/** The config module's default export (or `{}` without one). Its options are checked by the service. */
export async function loadConfig (file: string | undefined, cwd: string): Promise<CliConfig> {
  if (file === undefined || file === '') return {}
  const url = pathToFileURL(path.resolve(cwd, file)).href
  let mod: { default?: unknown }
  try {
    mod = await import(url) as { default?: unknown }
  } catch (err) {
    throw new CliError(`cannot load the config ${JSON.stringify(file)}: ${(err as Error).message.split('\n')[0]}`)
  }
  const config = mod.default
  if (!isPlainObject(config)) throw new CliError(`the config ${JSON.stringify(file)} must export default an object of the plugin's options (e.g. { service: { prefix } })`)
  return config as CliConfig
}
