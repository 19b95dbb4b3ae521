#!/usr/bin/env node
// The `missive` command: runs the TypeScript sources through tsx (no build step between `npm ci` and use).
import { register } from "tsx/esm/api"

register()
const { main } = await import("../nodes/src/cli/main.ts")
const code = await main(process.argv.slice(2))
process.exitCode = code
