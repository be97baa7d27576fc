#!/usr/bin/env node
process.exitCode = await (await import('./main.js')).main(process.argv.slice(2))
