// Which configuration a node runs with, in the log: `PolicyActivated` on the stream `policy`, once per policy hash
// (the hash every event made under it carries), with the configuration redacted as the admin API shows it. Appends
// only a hash the stream does not hold yet, with the stream's expected version: two nodes activating the same
// configuration at once record it once (the second sees the first on its retry). Must not store a secret.
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
}

/** The recorded activations, oldest first. */
export const list = async (events: EventStore.EventStore): Promise<ReadonlyArray<Extract<Message.Event, { type: "PolicyActivated" }>>> =>
  (await events.read(STREAM)).flatMap((s) => (s.event.type === "PolicyActivated" ? [s.event] : []))

/** Appends `PolicyActivated` when the log has no activation of this hash; true when it appended. */
export const record = async (events: EventStore.EventStore, a: Activation): Promise<boolean> => {
  const event: Message.Event = {
    v: 1,
    at: a.at,
    node: a.node,
    policy: a.hash,
    type: "PolicyActivated",
    hash: a.hash,
    config: redact(a.config),
    reason: a.reason
  }
  for (let attempt = 0; ; attempt++) {
    const stored = await events.read(STREAM)
    if (stored.some((s) => s.event.type === "PolicyActivated" && s.event.hash === a.hash)) return false
    try {
      await events.append(STREAM, stored.length, [event])
      return true
    } catch (e) {
      // another node appended meanwhile: read again (it may have recorded this very hash)
      if (!StoreError.isWrongExpectedVersion(e) || attempt >= 4) throw e
    }
  }
}
