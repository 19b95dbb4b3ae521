#!/usr/bin/env node
// A Missive node for the simulation's cluster target: `missive start …` with its output (JSON log lines and notices)
// appended to $MISSIVE_SIM_NODE_LOG instead of the harness's terminal, and the log level from $MISSIVE_LOG_LEVEL.
// Handed to nodes/src/cluster/Launcher.ts as its `missive` script, so the launcher itself stays unchanged.
import { createWriteStream } from "node:fs"
import { resolve } from "node:path"

const file = process.env["MISSIVE_SIM_NODE_LOG"]
if (file) {
  const out = createWriteStream(file, { flags: "a" })
  const write = (chunk, encoding, cb) => out.write(chunk, typeof encoding === "string" ? encoding : undefined, typeof encoding === "function" ? encoding : cb)
  process.stdout.write = write
  process.stderr.write = write
}
process.argv.splice(1, 1, resolve(import.meta.dirname, "../../bin/missive.mjs"))
await import("../../bin/missive.mjs")
