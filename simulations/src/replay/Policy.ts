// `missive replay policy HASH` and `--diff A B`: the configuration a node recorded for a policy hash (`PolicyActivated`
// on the stream `policy`, secrets already replaced when it was stored), and a line diff of two of them by flattened
// key path (`- delivery.tls: "none"` / `+ delivery.tls: "opportunistic"`). Reads the log; never writes.
import type { Message } from "@missive/core"
import { Activation } from "@missive/node"
import { stringify } from "yaml"
import { iso } from "./Time.js"
import type { Store } from "./Log.js"

export type Activated = Extract<Message.Event, { type: "PolicyActivated" }>

/** Every recorded activation, oldest first. */
export const recorded = (store: Store): Promise<ReadonlyArray<Activated>> => Activation.list(store)

/**
 * The activation of this hash: the first recorded in effect (a hash is the same configuration wherever it was
 * activated), else a reload's record of it still awaiting a restart.
 */
export const find = async (store: Store, hash: string): Promise<Activated | undefined> => {
  const all = (await Activation.list(store)).filter((e) => e.hash === hash)
  return all.find((e) => e.awaitingRestart === undefined) ?? all[0]
}

/** Every leaf of a JSON value by key path (`delivery.tls`, `auth.users[0].name`), each value as JSON (the node's own). */
export const flatten = Activation.flatten

/** The key paths that differ, in path order: `- path: old` then `+ path: new` (one of them when a path is only on one side). */
export const diff = (a: unknown, b: unknown): ReadonlyArray<string> => {
  const fa = flatten(a)
  const fb = flatten(b)
  const lines: Array<string> = []
  for (const p of [...new Set([...fa.keys(), ...fb.keys()])].sort()) {
    const x = fa.get(p)
    const y = fb.get(p)
    if (x === y) continue
    if (x !== undefined) lines.push(`- ${p}: ${x}`)
    if (y !== undefined) lines.push(`+ ${p}: ${y}`)
  }
  return lines
}

/** One recorded policy for people: when and where it was activated, then the configuration as YAML. */
export const format = (e: Activated): string =>
  [
    e.awaitingRestart === undefined
      ? `# policy ${e.hash}: activated at ${e.reason} on ${e.node}, ${iso(e.at)} (secrets redacted)`
      : `# policy ${e.hash}: read at reload on ${e.node}, ${iso(e.at)}, not in effect until a restart (secrets redacted); awaiting a restart: ${e.awaitingRestart.join(", ")}`,
    stringify(e.config).trimEnd()
  ].join("\n")

/** The diff of two recorded policies, with a header naming both; "(no difference)" when the configurations are equal. */
export const formatDiff = (a: Activated, b: Activated): string => {
  const lines = diff(a.config, b.config)
  return [`--- policy ${a.hash} (${a.reason} on ${a.node}, ${iso(a.at)})`, `+++ policy ${b.hash} (${b.reason} on ${b.node}, ${iso(b.at)})`]
    .concat(lines.length ? lines : ["(no difference)"])
    .join("\n")
}

/**
 * For what-if: each recorded hash against the alternative configuration (redacted as it would be stored), the diff
 * when the log holds that policy, else a line saying it does not (a log older than `PolicyActivated`).
 */
export const againstAlternative = async (
  store: Store,
  recorded: ReadonlyArray<string>,
  alt: { readonly hash: string; readonly config: unknown }
): Promise<ReadonlyArray<string>> => {
  const out: Array<string> = []
  for (const hash of recorded) {
    const e = await find(store, hash)
    if (!e) {
      out.push(`policy ${hash}: not in the log (no PolicyActivated for it), no diff`)
      continue
    }
    const lines = diff(e.config, alt.config)
    out.push(`policy ${hash} (recorded) -> ${alt.hash} (what-if)${lines.length ? ":" : ": no difference"}`)
    out.push(...lines.map((l) => `  ${l}`))
  }
  return out
}
