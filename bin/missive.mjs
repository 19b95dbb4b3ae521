#!/usr/bin/env node
// The `missive` command: runs the TypeScript sources through tsx (no build step between `npm ci` and use).
// Exits as soon as the command is done: a stopped node or a failed start leaves no handle keeping it alive.
import { register } from "tsx/esm/api"

register()
const { main } = await import("../nodes/src/cli/main.ts")
const code = await main(process.argv.slice(2))
process.exit(code)
