// Running one node as a process: start it from a configuration, say where it listens (stderr), and stop it cleanly
// on SIGINT or SIGTERM. The one loop behind `missive start` and the simulations' node processes; parses no command
// line (that is the CLI's) and never calls process.exit (its caller owns the exit code).
import type { Config } from "./config/Config.js"
import { load } from "./config/Config.js"
import { start, StartError } from "./Node.js"

/**
 * Runs the node until SIGINT/SIGTERM or a drain request; resolves 0 after a clean stop. Throws `StartError` when it
 * cannot start. With the configuration's `path`, SIGHUP re-reads it and reloads the filter stage's address maps.
 */
export const serve = async (config: Config, graceMs = 10_000, path?: string): Promise<number> => {
  const node = await start(config)
  const listening = Object.entries(node.ports)
    .map(([n, p]) => `${n} ${p}`)
    .join(", ")
  process.stderr.write(`missive: node ${config.node_id} listening on ${listening}; data in ${node.dataDir}\n`)
  const onHup = () => {
    if (path === undefined) return void process.stderr.write("missive: SIGHUP: no configuration file to re-read\n")
    const r = load(path)
    if (!r.ok) return void process.stderr.write(`missive: SIGHUP: ${path} is invalid, nothing reloaded:\n  ${r.errors.join("\n  ")}\n`)
    node.reloadFilters(r.config, "SIGHUP").then(
      () => void process.stderr.write(`missive: SIGHUP: filter maps reloaded from ${path}\n`),
      (e: unknown) => void process.stderr.write(`missive: SIGHUP: ${(e as Error).message}; the previous maps stay\n`)
    )
  }
  await new Promise<void>((done) => {
    const stop = (sig: string) => {
      process.stderr.write(`missive: ${sig}: stopping (finishing deliveries in progress)\n`)
      node.stop(graceMs).then(done, (e) => {
        process.stderr.write(`missive: stop failed: ${String(e)}\n`)
        done()
      })
    }
    void node.drainRequested.then(() => stop("drain"))
    process.once("SIGINT", () => stop("SIGINT"))
    process.once("SIGTERM", () => stop("SIGTERM"))
    process.on("SIGHUP", onHup)
  })
  process.off("SIGHUP", onHup)
  return 0
}

/**
 * A node process started by a launcher: `start --config FILE`, nothing else (a launcher writes the whole
 * configuration into FILE). Exit code 2 for bad arguments or configuration, 1 when the node cannot start.
 */
export const serveArgs = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [cmd, flag, file, ...rest] = argv
  if (cmd !== "start" || flag !== "--config" || !file || rest.length > 0) {
    process.stderr.write(`missive node: usage: start --config FILE (got ${argv.join(" ")})\n`)
    return 2
  }
  const r = load(file)
  if (!r.ok) {
    process.stderr.write(`missive node: invalid configuration in ${file}:\n${r.errors.map((e) => `  ${e}`).join("\n")}\n`)
    return 2
  }
  try {
    return await serve(r.config)
  } catch (e) {
    if (!(e instanceof StartError)) throw e
    process.stderr.write(`missive: cannot start: ${e.message}\n`)
    return 1
  }
}
