#!/usr/bin/env node
// The `missive` command: the CLI package's compiled JavaScript (cli/dist, built by `npm run build`, which `npm ci`
// runs as `prepare`), through its door `@missive/cli`. Exits as soon as the command is done: a stopped node or a
// failed start leaves no handle.
let cli
try {
  cli = await import("@missive/cli")
} catch (e) {
  if (e?.code !== "ERR_MODULE_NOT_FOUND" || !String(e.message).includes("/dist/")) throw e
  process.stderr.write(`missive: not built (${e.message.split("\n")[0]}): run "npm run build" (npm ci runs it)\n`)
  process.exit(2)
}
process.exit(await cli.main(process.argv.slice(2)))
