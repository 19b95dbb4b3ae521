// The operator's queue projection: a queue row per message (what `missive queue list` prints) and its table.
// Pure functions over folded state; must not read a store itself. A message's timeline is `Replay.Timeline`
// (@missive/simulations), shared by `queue show` and `replay timeline`.
import { Message, Reply } from "@missive/core"

export interface QueueRow {
  readonly id: string
  readonly receivedAt: number
  readonly ageMs: number
  readonly size: number
  readonly sender: string
  readonly recipients: ReadonlyArray<{
    readonly address: string
    readonly status: Message.RecipientStatus
    readonly nextAttemptAt?: number | undefined
    readonly lastReply?: string | undefined
  }>
  readonly held: boolean
  /** Why the filter stage quarantined it (held until an operator releases it). */
  readonly quarantined?: string | undefined
  readonly nextAttemptAt?: number | undefined
  readonly lastReply?: string | undefined
  readonly status: "active" | "completed"
}

export const rowOf = (s: Message.State, now: number): QueueRow | undefined => {
  if (s.status === "empty") return undefined
  const last = [...s.recipients].reverse().find((r) => r.lastReply)
  return {
    id: s.id,
    receivedAt: s.receivedAt,
    ageMs: now - s.receivedAt,
    size: s.size,
    sender: s.sender,
    held: s.held,
    quarantined: s.quarantined,
    status: s.status,
    recipients: s.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      nextAttemptAt: r.nextAttemptAt,
      lastReply: r.lastReply ? Reply.format(r.lastReply) : undefined
    })),
    nextAttemptAt: s.status === "active" && !s.held ? Message.nextDue(s) : undefined,
    lastReply: last?.lastReply ? Reply.format(last.lastReply) : undefined
  }
}

export const formatAge = (ms: number): string => {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`
}

const iso = (ms: number | undefined) => (ms === undefined ? "-" : new Date(ms).toISOString())

/** Fixed-width table of queue rows, Postfix mailq style: one line per message then one per recipient. */
export const formatTable = (rows: ReadonlyArray<QueueRow>): string => {
  const out: Array<string> = []
  out.push(["ID".padEnd(26), "AGE".padStart(8), "SIZE".padStart(9), "NEXT ATTEMPT".padEnd(24), "SENDER"].join("  "))
  for (const r of rows) {
    out.push(
      [
        r.id.padEnd(26),
        formatAge(r.ageMs).padStart(8),
        String(r.size).padStart(9),
        (r.quarantined !== undefined ? "quarantined" : r.held ? "held" : iso(r.nextAttemptAt)).padEnd(24),
        r.sender === "" ? "<>" : r.sender
      ].join("  ")
    )
    for (const rc of r.recipients) out.push(`    ${rc.address}  ${rc.status}${rc.lastReply ? `  (${rc.lastReply})` : ""}`)
  }
  out.push(`-- ${rows.length} message${rows.length === 1 ? "" : "s"}, ${rows.reduce((n, r) => n + r.size, 0)} bytes`)
  return out.join("\n")
}
