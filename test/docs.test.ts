// The README is the user's guide: every error code the package exports and every plugin option (nested
// ones by their whole path) is documented in it, and its table of contents follows its sections.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { errorCodes } from '../lib/index.js'
import { pluginOptions } from '../lib/options.js'
import { databaseOptions } from '../lib/store/database.js'
import { optionPaths } from '../lib/validate.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

t.test('every exported error code is in the README', async (t) => {
  const codes = Object.keys(errorCodes)
  t.ok(codes.length >= 9)
  for (const code of codes) t.ok(readme.includes(`\`${code}\``), code)
})

t.test('every plugin option is in the README, by its whole path', async (t) => {
  const paths = optionPaths(pluginOptions)
  t.ok(paths.includes('drizzle.cache.ttl') && paths.includes('routes.throttle.perIp'), 'nested options are listed')
  for (const path of paths) {
    // In a table row or the text, in backticks; `routes.login` may share a cell with its siblings.
    t.ok(readme.includes(`\`${path}\``), path)
  }
})

t.test('every createDatabase option is in the README', async (t) => {
  const paths = optionPaths(databaseOptions)
  t.ok(paths.includes('replicas') && paths.includes('replicaMaxLag'), 'the replica options are listed')
  for (const path of paths) t.ok(readme.includes(`| \`${path}\` |`), path)
})

t.test('the table of contents follows the order of the sections', async (t) => {
  const sections = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1])
  const toc = readme.slice(0, readme.indexOf('\n## ')).match(/\]\(#[^)]+\)/g)?.map((l) => l.slice(3, -1)) ?? []
  const anchor = (title: string): string => title.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')
  t.same(toc, sections.map(anchor), 'one entry per section, in order')
})

t.test('every link to a section of a document goes to a heading of it', async (t) => {
  const anchor = (title: string): string => title.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')
  for (const file of ['README.md', 'SECURITY.md', 'CONTRIBUTING.md', 'docs/decisions.md', 'docs/performance.md']) {
    const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')
    const headings = new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1])))
    for (const [, target] of text.matchAll(/\]\(#([^)]+)\)/g)) t.ok(headings.has(target), `${file}: #${target}`)
  }
})
