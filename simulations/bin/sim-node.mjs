#!/usr/bin/env node
// A Missive node for the simulation's cluster target, started through the node package's own door
// (`@missive/node` `Serve.serveArgs`, never the CLI: simulations sit below it), with its output (JSON log lines and
// notices) appended to $MISSIVE_SIM_NODE_LOG instead of the harness's terminal. Handed to the cluster launcher
// (`Launcher.up`) as its `missive` script, which runs it as `sim-node.mjs start --config FILE`.
import { createWriteStream } from "node:fs"

const file = process.env["MISSIVE_SIM_NODE_LOG"]
if (file) {
  const out = createWriteStream(file, { flags: "a" })
  const write = (chunk, encoding, cb) =>
    out.write(chunk, typeof encoding === "string" ? encoding : undefined, typeof encoding === "function" ? encoding : cb)
  process.stdout.write = write
  process.stderr.write = write
}
const { Serve } = await import("@missive/node") // compiled: nodes/dist (npm run build)
process.exit(await Serve.serveArgs(process.argv.slice(2)))
