/**
 * The README's TypeScript blocks, as the consumer test compiles and runs them. A block may be preceded
 * by an HTML comment (hidden on GitHub) saying what it is:
 *
 *   <!-- run -->                         run it (after compiling) and check what it prints
 *   <!-- file: own-users/app.ts, run --> it is that file of a small project (the blocks of one folder
 *                                        compile together)
 *   <!-- context: <code> -->             declarations the fragment needs (compiled before it, not shown)
 *
 * In a block, `// → text` after a statement is a line the block prints, in order.
 */

export interface Block {
  /** 1-based line of the opening fence in the README. */
  line: number
  code: string
  /** Where it goes: `<project>/<file>`. */
  file: string
  run: boolean
  /** The lines it must print, in order. */
  expected: string[]
}

export function readmeBlocks (readme: string): Block[] {
  const lines = readme.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i])
    const directive = /^<!-- (.*) -->$/.exec(lines[start - 1] ?? '')?.[1] ?? ''
    const context = /^context: (.*)$/.exec(directive)?.[1]
    const parts = context === undefined ? directive.split(',').map((s) => s.trim()).filter(Boolean) : []
    const file = parts.find((p) => p.startsWith('file: '))?.slice(6) ?? `blocks/line-${start + 1}.ts`
    const code = [...(context === undefined ? [] : [context.replaceAll('; ', '\n')]), ...body, ...(file.startsWith('blocks/') ? ['export {}'] : [])].join('\n') + '\n'
    const expected = body.map((l) => / \/\/ → (.*)$/.exec(l)?.[1]).filter((e): e is string => e !== undefined)
    blocks.push({ line: start + 1, code, file, run: parts.includes('run'), expected })
  }
  return blocks
}
