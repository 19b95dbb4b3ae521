#!/usr/bin/env node
// The `missive` command: runs the CLI's TypeScript sources (cli/, package @missive/cli) through tsx (no build step
// between `npm ci` and use). Exits as soon as the command is done: a stopped node or a failed start leaves no handle.
import { register } from "tsx/esm/api"

register()
const { main } = await import("../cli/src/main.ts")
const code = await main(process.argv.slice(2))
process.exit(code)
