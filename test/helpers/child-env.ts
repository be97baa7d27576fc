/**
 * The environment for a process a test starts with `node --import tsx` (the CLI, an app server): the
 * test's own, with tap's coverage recorder told to record nothing there (@tapjs/processinfo, which
 * tap injects into every child, reads `_TAPJS_PROCESSINFO_COVERAGE_`). Such a child transpiles lib/
 * with tsx, not with tap's TypeScript loader, and c8 merges coverage by file: two transpilations of
 * one file give byte ranges of one applied to the source map of the other, and which map wins depends
 * on the order the coverage files are read in. A CI run once reported only the bench files' coverage
 * that way (all of lib/ dropped, the floors missed). So the children's coverage is not counted; the
 * floors in .taprc are the test processes' own.
 */
export function childEnv (): NodeJS.ProcessEnv {
  return { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
}
