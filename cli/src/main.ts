// The `missive` command line: start a node, check a configuration, look at the queue.
// Bad arguments and bad configuration get a precise message and exit code 2; nothing here touches accepted mail.
import type { QueueView } from "@missive/events"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { userInfo } from "node:os"
import type { Config as Configuration } from "@missive/node"
import { FILTER_HELP } from "./Filter.js"
import { rootWarning } from "./Root.js"
import {
  CLUSTER_HELP as ClusterHelp,
  ClusterUsageError,
  SUPPRESSION_HELP,
  natsFlag,
  parseFlags,
  REPLAY_HELP,
  SIM_HELP as SimHelp,
  withNats
} from "./Help.js"

// Command modules load on demand: `missive help` or `config check` need neither the node, nor replay, nor NATS.
type Config = Configuration.Config
const events = () => import("@missive/events")
const node = () => import("@missive/node")
const configModule = async () => (await node()).Config

const HELP = `missive — an event-sourced mail transfer agent

Usage:
  missive start [--config FILE]            start a node (defaults: SMTP on 2525, submission on 2587, data in ./data)
  missive start … --allow-root             run as root without the warning (use an unprivileged user instead)
  missive start --nats URL[,URL…]          join a cluster: JetStream for the log, bodies and work (overrides cluster.nats)
  missive config check FILE                validate a configuration file; prints each problem with its key path
  missive queue list [--quarantine] [--config FILE] [--json]
                                           messages in the queue: id, age, size, sender, recipients and their
                                           states, next attempt, last reply; --quarantine: only those the filter
                                           stage holds (release one with missive queue release ID)
  missive queue show ID [--config FILE] [--json]
                                           the message's event timeline
${REPLAY_HELP}${SimHelp}${ClusterHelp}  missive queue hold|release|retry|delete|bounce ID [--config FILE] [--by NAME]
                                           operator commands on a running node (recorded with who asked);
                                           retry = attempt now, bounce = give up now with a DSN
${SUPPRESSION_HELP}  missive auth hash [PASSWORD]             print the scrypt hash of a password for auth.users (stdin when omitted)
  missive token new NAME [--scope read|inject|admin]
                                           make an HTTP API token: prints the token once and its http.tokens entry
  missive token hash [TOKEN]               print the hash of a token for http.tokens (stdin when omitted)
${FILTER_HELP}  missive help                             this text

Options:
  --config FILE   YAML configuration (every key has a default; see README.md "Configuration")
  --json          machine-readable output
  --nats URLS     a cluster's NATS servers, comma-separated: "queue" then reads the cluster, from any node
`

class UsageError extends Error {}

interface Args {
  readonly positional: ReadonlyArray<string>
  readonly flags: ReadonlyMap<string, string | true>
}

const parseArgs = (argv: ReadonlyArray<string>, known: Record<string, "value" | "bool">): Args => {
  const r = parseFlags(argv, known)
  if (typeof r === "string") throw new UsageError(r)
  return r
}

const loadConfig = async (path: string | true | undefined): Promise<Config> => {
  const file = typeof path === "string" ? path : undefined
  const r = (await configModule()).load(file)
  if (!r.ok) {
    process.stderr.write(`missive: invalid configuration${file ? ` in ${file}` : ""}:\n${r.errors.map((e) => `  ${e}`).join("\n")}\n`)
    process.exit(2)
  }
  return r.config
}

const openStore = async (config: Config) => {
  const path = join(resolve(config.data_dir), "missive.db")
  if (!existsSync(path)) {
    process.stderr.write(`missive: no queue at ${path} (has a node run with this data_dir?)\n`)
    process.exit(1)
  }
  return (await events()).EmbeddedStore.open({ path, readonly: true, eventstoredb: config.store.eventstoredb })
}

const commands: Record<string, (argv: ReadonlyArray<string>) => Promise<number>> = {
  start: async (argv) => {
    const a = parseArgs(argv, { config: "value", nats: "value", "allow-root": "bool" })
    if (a.positional.length > 0) throw new UsageError(`start takes no arguments (got ${a.positional.join(" ")})`)
    // As root: a warning, unless --allow-root says root is meant (cli/src/Root.ts).
    const warning = rootWarning(a.flags.has("allow-root"))
    if (warning !== undefined) process.stderr.write(warning)
    const config = withNats(await loadConfig(a.flags.get("config")), natsFlag(a.flags.get("nats")))
    const file = a.flags.get("config")
    return (await node()).Serve.serve(config, 10_000, typeof file === "string" ? file : undefined)
  },
  config: async (argv) => {
    if (argv[0] === "reload") return (await import("./Filter.js")).reload(argv.slice(1), loadConfig)
    const a = parseArgs(argv, {})
    const [sub, file, ...rest] = a.positional
    if (sub !== "check" || !file || rest.length > 0)
      throw new UsageError("usage: missive config check FILE | missive config reload [--config FILE]")
    const r = (await configModule()).load(file)
    if (r.ok) {
      process.stdout.write(`${file}: OK\n`)
      return 0
    }
    process.stderr.write(`${r.errors.join("\n")}\n`)
    return 1
  },
  queue: async (argv) => {
    const a = parseArgs(argv, { config: "value", json: "bool", nats: "value", by: "value", quarantine: "bool" })
    const [sub, ...rest] = a.positional
    const config = withNats(await loadConfig(a.flags.get("config")), natsFlag(a.flags.get("nats")))
    const json = a.flags.has("json")
    if (config.cluster.nats.length > 0 && ((sub === "list" && rest.length === 0) || (sub === "show" && rest.length === 1)))
      return (await import("./Cluster.js")).queue(
        config,
        sub,
        rest,
        json,
        (s) => void process.stdout.write(`${s}\n`),
        (s) => void process.stderr.write(`${s}\n`)
      )
    if (sub === "list") {
      if (rest.length > 0) throw new UsageError("usage: missive queue list [--quarantine] [--config FILE] [--json]")
      const quarantine = a.flags.has("quarantine")
      const store = await openStore(config)
      const { EventStore, QueueView } = await events()
      const { Message } = await import("@missive/core")
      const now = (await node()).Clock.systemClock.now()
      const rows: Array<QueueView.QueueRow> = []
      for (const item of await store.work.list(100_000)) {
        const state = Message.fold((await store.events.read(EventStore.streamOf(item.id))).map((e) => e.event))
        const row = QueueView.rowOf(state, now)
        if (row && row.status === "active" && (!quarantine || row.quarantined !== undefined)) rows.push(row)
      }
      rows.sort((x, y) => x.receivedAt - y.receivedAt)
      process.stdout.write(json ? `${JSON.stringify(rows, null, 2)}\n` : `${QueueView.formatTable(rows)}\n`)
      await store.close()
      return 0
    }
    if (sub === "show") {
      const [id, ...more] = rest
      if (!id || more.length > 0) throw new UsageError("usage: missive queue show ID [--config FILE] [--json]")
      const store = await openStore(config)
      const { EventStore } = await events()
      const stored = await store.events.read(EventStore.streamOf(id))
      await store.close()
      if (stored.length === 0) {
        process.stderr.write(`missive: no message ${id}\n`)
        return 1
      }
      const { Timeline } = await events()
      const tl = Timeline.build(id, stored)
      process.stdout.write(json ? `${JSON.stringify(Timeline.toJson(tl), null, 2)}\n` : `${Timeline.format(tl)}\n`)
      return 0
    }
    if (sub === "hold" || sub === "release" || sub === "retry" || sub === "delete" || sub === "bounce") {
      const [id, ...more] = rest
      if (!id || more.length > 0) throw new UsageError(`usage: missive queue ${sub} ID [--config FILE]`)
      const r = await (
        await node()
      ).Admin.request(resolve(config.data_dir), { op: sub, id, by: String(a.flags.get("by") ?? `${userInfo().username}@cli`) })
      if (!r.ok) {
        process.stderr.write(`missive: ${sub} ${id}: ${r.error}\n`)
        return 1
      }
      process.stdout.write(`${id}: ${r.events?.join(", ") || "no change"}\n`)
      return 0
    }
    throw new UsageError("usage: missive queue list|show|hold|release|retry|delete|bounce …")
  },
  suppression: async (argv) => (await import("./Suppression.js")).suppression(argv, loadConfig),
  replay: async (argv) => (await import("./Replay.js")).replay(argv),
  dkim: async (argv) => (await import("./Filter.js")).dkim(argv, loadConfig),
  sim: async (argv) => (await import("./Sim.js")).sim(argv),
  cluster: async (argv) => {
    // cluster's own config loading is synchronous: load the module first, then hand it a synchronous loader.
    const { load } = await configModule()
    const { cluster } = await import("./Cluster.js")
    return cluster(argv, (p) => {
      const file = typeof p === "string" ? p : undefined
      const r = load(file)
      if (!r.ok) {
        process.stderr.write(`missive: invalid configuration${file ? ` in ${file}` : ""}:\n${r.errors.map((e) => `  ${e}`).join("\n")}\n`)
        process.exit(2)
      }
      return r.config
    })
  },
  auth: async (argv) => {
    const a = parseArgs(argv, {})
    const [sub, plain, ...rest] = a.positional
    if (sub !== "hash" || rest.length > 0)
      throw new UsageError("usage: missive auth hash [PASSWORD]   (reads the password from stdin when not given)")
    let password = plain
    if (password === undefined) {
      const chunks: Array<Buffer> = []
      for await (const c of process.stdin) chunks.push(c as Buffer)
      password = Buffer.concat(chunks)
        .toString("utf8")
        .replace(/\r?\n$/, "")
    }
    if (!password) throw new UsageError("empty password")
    process.stdout.write(`${await (await configModule()).hashPassword(password)}\n`)
    return 0
  },
  token: async (argv) => {
    const a = parseArgs(argv, { scope: "value" })
    const [sub, arg, ...rest] = a.positional
    const { Http } = await node()
    if (sub === "new" && arg !== undefined && rest.length === 0) {
      const scope = String(a.flags.get("scope") ?? "read")
      if (!["read", "inject", "admin"].includes(scope)) throw new UsageError(`--scope: expected read, inject or admin, got ${scope}`)
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(arg))
        throw new UsageError(`token name ${JSON.stringify(arg)}: letters, digits, ., _, @ and - only`)
      const token = Http.generateToken()
      process.stdout.write(
        `token (shown once; give it to the client as "Authorization: Bearer <token>"):\n  ${token}\n` +
          `configuration (under http.tokens):\n  - name: ${arg}\n    scope: ${scope}\n    hash: "${Http.hashToken(token)}"\n`
      )
      return 0
    }
    if (sub !== "hash" || rest.length > 0 || a.flags.has("scope"))
      throw new UsageError("usage: missive token new NAME [--scope read|inject|admin] | missive token hash [TOKEN]")
    let plain = arg
    if (plain === undefined) {
      const chunks: Array<Buffer> = []
      for await (const c of process.stdin) chunks.push(c as Buffer)
      plain = Buffer.concat(chunks)
        .toString("utf8")
        .replace(/\r?\n$/, "")
    }
    if (!plain) throw new UsageError("empty token")
    process.stdout.write(`${Http.hashToken(plain)}\n`)
    return 0
  },
  help: async () => {
    process.stdout.write(HELP)
    return 0
  }
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [cmd, ...rest] = argv
  if (!cmd || cmd === "--help" || cmd === "-h") {
    process.stdout.write(HELP)
    return cmd ? 0 : 2
  }
  const f = commands[cmd]
  try {
    if (!f) throw new UsageError(`unknown command "${cmd}"`)
    if (rest.includes("--help") || rest.includes("-h")) return commands["help"]!([])
    return await f(rest)
  } catch (e) {
    if ((e as { _tag?: string })._tag === "StartError") {
      process.stderr.write(`missive: cannot start: ${(e as Error).message}\n`)
      return 1
    }
    if (
      e instanceof UsageError ||
      e instanceof ClusterUsageError ||
      (e instanceof Error && (e.name === "SuppressionUsageError" || e.name === "FilterUsageError"))
    ) {
      process.stderr.write(`missive: ${e.message}\nRun "missive help" for usage.\n`)
      return 2
    }
    throw e
  }
}
