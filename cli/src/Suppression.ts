// `missive suppression list|add|remove|import`: the suppression list from the command line. `list` reads the log
// (read-only, the node may be running); add, remove and import go to the running node's operator socket, so the
// node's own command handler appends them and records who asked. Nothing here writes to the store directly.
import { readFileSync } from "node:fs"
import { userInfo } from "node:os"
import { join, resolve } from "node:path"
import type { Config as Configuration } from "@missive/node"
import { parseFlags } from "./Help.js"

type Config = Configuration.Config

export class SuppressionUsageError extends Error {
  override readonly name = "SuppressionUsageError"
}

const REASONS = ["manual", "bounce", "complaint"] as const

/** Lines of an import file: "address" or "address,reason"; blank lines, comments and a CSV header are skipped. */
export const parseImport = (
  text: string,
  fallback: (typeof REASONS)[number]
): { readonly entries: ReadonlyArray<{ address: string; reason: (typeof REASONS)[number] }>; readonly errors: ReadonlyArray<string> } => {
  const entries: Array<{ address: string; reason: (typeof REASONS)[number] }> = []
  const errors: Array<string> = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim()
    if (line === "" || /^email(address)?\s*,/i.test(line)) return
    const [address = "", reasonText] = line.split(",").map((s) => s.trim())
    const reason = reasonText === undefined || reasonText === "" ? fallback : (reasonText.toLowerCase() as (typeof REASONS)[number])
    if (!REASONS.includes(reason)) errors.push(`line ${i + 1}: unknown reason ${JSON.stringify(reasonText)}`)
    else if (!/^[^\s@<>,]+@[^\s@<>,]+$/.test(address)) errors.push(`line ${i + 1}: not an address: ${JSON.stringify(address)}`)
    else entries.push({ address, reason })
  })
  return { entries, errors }
}

export const suppression = async (
  argv: ReadonlyArray<string>,
  loadConfig: (p: string | true | undefined) => Promise<Config>
): Promise<number> => {
  const a = parseFlags(argv, { config: "value", json: "bool", by: "value", reason: "value" })
  if (typeof a === "string") throw new SuppressionUsageError(a)
  const [sub, ...rest] = a.positional
  const config = await loadConfig(a.flags.get("config"))
  const by = String(a.flags.get("by") ?? `${userInfo().username}@cli`)
  const reason = String(a.flags.get("reason") ?? "manual") as (typeof REASONS)[number]
  if (!REASONS.includes(reason)) throw new SuppressionUsageError(`--reason: expected manual, bounce or complaint, got ${reason}`)
  const out = (s: string) => void process.stdout.write(`${s}\n`)

  if (sub === "list") {
    if (rest.length > 0) throw new SuppressionUsageError("usage: missive suppression list [--config FILE] [--json]")
    const { EmbeddedStore } = await import("@missive/events")
    const { Suppression } = await import("@missive/core")
    const path = join(resolve(config.data_dir), "missive.db")
    const store = await EmbeddedStore.open({ path, readonly: true, eventstoredb: config.store.eventstoredb }).catch(() => undefined)
    if (!store) {
      process.stderr.write(`missive: no store at ${path} (has a node run with this data_dir?)\n`)
      return 1
    }
    const state = Suppression.fold((await store.events.read(Suppression.STREAM)).map((e) => e.event))
    await store.close()
    const rows = [...state.entries.values()].sort((x, y) => x.address.localeCompare(y.address))
    if (a.flags.has("json")) out(JSON.stringify(rows, null, 2))
    else if (rows.length === 0) out("the suppression list is empty")
    else {
      const width = Math.max(...rows.map((r) => r.address.length), 7)
      out(`${"ADDRESS".padEnd(width)}  REASON     SINCE                     BY / SOURCE`)
      for (const r of rows)
        out(
          `${r.address.padEnd(width)}  ${r.reason.padEnd(9)}  ${new Date(r.at).toISOString().padEnd(24)}  ${r.by}${r.source ? ` (${r.source})` : ""}${r.detail ? `: ${r.detail}` : ""}`
        )
    }
    return 0
  }

  let action: "add" | "remove"
  let entries: Array<{ address: string; reason: (typeof REASONS)[number] }>
  if (sub === "add" || sub === "remove") {
    if (rest.length === 0) throw new SuppressionUsageError(`usage: missive suppression ${sub} ADDRESS… [--config FILE]`)
    action = sub
    entries = rest.map((address) => ({ address, reason }))
  } else if (sub === "import") {
    const [file, ...more] = rest
    if (!file || more.length > 0) throw new SuppressionUsageError("usage: missive suppression import FILE [--reason R] [--config FILE]")
    const parsed = parseImport(readFileSync(file, "utf8"), reason)
    if (parsed.errors.length > 0) {
      process.stderr.write(`missive: ${file}:\n${parsed.errors.map((e) => `  ${e}`).join("\n")}\n`)
      return 2
    }
    action = "add"
    entries = [...parsed.entries]
  } else throw new SuppressionUsageError("usage: missive suppression list|add|remove|import …")

  const { Admin } = await import("@missive/node")
  // One request per reason (the operator channel takes one reason per request).
  let count = 0
  for (const r of REASONS) {
    const addresses = entries.filter((e) => e.reason === r).map((e) => e.address)
    if (addresses.length === 0) continue
    const answer = await Admin.request(resolve(config.data_dir), { op: "suppression", action, addresses, reason: r, by })
    if (!answer.ok) {
      process.stderr.write(`missive: suppression ${sub}: ${answer.error}\n`)
      return 1
    }
    count += answer.count ?? 0
  }
  out(
    action === "add"
      ? `${count} address(es) added (${entries.length - count} already listed)`
      : `${count} address(es) removed from the suppression list`
  )
  return 0
}
