// Which configuration a node runs with, in the log: `PolicyActivated` on the stream `policy`, once per policy hash
// (the hash every event made under it carries), with the configuration redacted as the admin API shows it. Appends
// only a hash the stream does not hold yet, with the stream's expected version: two nodes activating the same
// configuration at once record it once (the second sees the first on its retry). A reload applies the filter maps
// only: a file whose hash differs is recorded with the key paths awaiting a restart, and the start that applies it
// records it again, in effect. Must not store a secret.
import type { Message } from "@missive/core"
import { EventStore, StoreError } from "@missive/events"
import type { Config } from "./Config.js"
import { redact } from "./Redact.js"

export const STREAM = "policy"

export interface Activation {
  readonly config: Config
  /** `policyHashOf(config)`: the hash the node's events carry under it. */
  readonly hash: string
  readonly node: string
  readonly at: number
  readonly reason: "start" | "reload"
  /** A reload's file not in effect: its key paths that differ from the running configuration's (see `awaiting`). */
  readonly awaitingRestart?: ReadonlyArray<string>
}

/** Every leaf of a JSON value by key path (`delivery.tls`, `auth.users[0].name`), each value as JSON. */
export const flatten = (v: unknown, path = ""): Map<string, string> => {
  const out = new Map<string, string>()
  const walk = (x: unknown, p: string) => {
    if (Array.isArray(x) && x.length > 0) x.forEach((y, i) => walk(y, `${p}[${i}]`))
    else if (x !== null && typeof x === "object" && !Array.isArray(x) && Object.keys(x).length > 0)
      for (const [k, y] of Object.entries(x)) {
        if (y !== undefined) walk(y, p === "" ? k : `${p}.${k}`)
      }
    else out.set(p, JSON.stringify(x) ?? "null")
  }
  walk(v, path)
  return out
}

/**
 * The key paths a reload reads but does not apply: every leaf of `next` that differs from the running configuration,
 * but the filter maps (`filter.*`, applied by the reload), in path order; secrets compared as stored (redacted).
 */
export const awaiting = (running: Config, next: Config): ReadonlyArray<string> => {
  const a = flatten(redact(running))
  const b = flatten(redact(next))
  return [...new Set([...a.keys(), ...b.keys()])].filter((p) => !p.startsWith("filter.") && p !== "filter" && a.get(p) !== b.get(p)).sort()
}

/** The recorded activations, oldest first. */
export const list = async (events: EventStore.EventStore): Promise<ReadonlyArray<Extract<Message.Event, { type: "PolicyActivated" }>>> =>
  (await events.read(STREAM)).flatMap((s) => (s.event.type === "PolicyActivated" ? [s.event] : []))

/**
 * Appends `PolicyActivated` when the log has no activation of this hash in effect (nor, for a reload's record awaiting
 * a restart, one awaiting already); true when it appended.
 */
export const record = async (events: EventStore.EventStore, a: Activation): Promise<boolean> => {
  const event: Message.Event = {
    v: 1,
    at: a.at,
    node: a.node,
    policy: a.hash,
    type: "PolicyActivated",
    hash: a.hash,
    config: redact(a.config),
    reason: a.reason,
    ...(a.awaitingRestart === undefined ? {} : { awaitingRestart: [...a.awaitingRestart] })
  }
  const pending = a.awaitingRestart !== undefined
  for (let attempt = 0; ; attempt++) {
    const stored = await events.read(STREAM)
    const held = (s: EventStore.StoredEvent) =>
      s.event.type === "PolicyActivated" && s.event.hash === a.hash && (s.event.awaitingRestart === undefined || pending)
    if (stored.some(held)) return false
    try {
      await events.append(STREAM, stored.length, [event])
      return true
    } catch (e) {
      // another node appended meanwhile: read again (it may have recorded this very hash)
      if (!StoreError.isWrongExpectedVersion(e) || attempt >= 4) throw e
    }
  }
}
