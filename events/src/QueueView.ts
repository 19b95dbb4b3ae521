// Projections for operators: a queue row per message (what `missive queue list` prints) and a message's timeline.
// Pure functions over folded state and stored events; the CLI and replay format them.
import { Message, Reply } from "@missive/core"
import type { StoredEvent } from "./EventStore.js"

export interface QueueRow {
  readonly id: string
  readonly receivedAt: number
  readonly ageMs: number
  readonly size: number
  readonly sender: string
  readonly recipients: ReadonlyArray<{ readonly address: string; readonly status: Message.RecipientStatus; readonly nextAttemptAt?: number | undefined; readonly lastReply?: string | undefined }>
  readonly held: boolean
  readonly nextAttemptAt?: number | undefined
  readonly lastReply?: string | undefined
  readonly status: "active" | "completed"
}

export const rowOf = (s: Message.State, now: number): QueueRow | undefined => {
  if (s.status === "empty") return undefined
  const last = [...s.recipients].reverse().find((r) => r.lastReply)
  return {
    id: s.id, receivedAt: s.receivedAt, ageMs: now - s.receivedAt, size: s.size, sender: s.sender, held: s.held,
    status: s.status,
    recipients: s.recipients.map((r) => ({ address: r.address, status: r.status, nextAttemptAt: r.nextAttemptAt, lastReply: r.lastReply ? Reply.format(r.lastReply) : undefined })),
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
    out.push([r.id.padEnd(26), formatAge(r.ageMs).padStart(8), String(r.size).padStart(9), (r.held ? "held" : iso(r.nextAttemptAt)).padEnd(24), r.sender === "" ? "<>" : r.sender].join("  "))
    for (const rc of r.recipients)
      out.push(`    ${rc.address}  ${rc.status}${rc.lastReply ? `  (${rc.lastReply})` : ""}`)
  }
  out.push(`-- ${rows.length} message${rows.length === 1 ? "" : "s"}, ${rows.reduce((n, r) => n + r.size, 0)} bytes`)
  return out.join("\n")
}

export interface TimelineEntry {
  readonly at: number
  readonly sinceStartMs: number
  readonly node: string
  readonly type: Message.EventType
  readonly summary: string
  readonly event: Message.Event
}

const replyText = (r: Reply.Reply) => Reply.format(r)

export const describe = (e: Message.Event): string => {
  switch (e.type) {
    case "MessageReceived":
      return `from <${e.sender}> to ${e.recipients.map((r) => `<${r}>`).join(", ")}, ${e.size} bytes, client ${e.client.ip} (helo ${e.client.helo}${e.client.tls ? ", TLS" : ""}${e.client.user ? `, auth ${e.client.user}` : ""})${e.dsnOf ? `, DSN for ${e.dsnOf}` : ""}`
    case "RecipientsRouted":
      return e.routes.map((r) => {
        const d = r.destination
        const where = d.kind === "smtp" ? `${d.via} ${d.key} -> ${d.hops.map((h) => `${h.host}:${h.port}`).join(", ") || "(no hosts)"}`
          : d.kind === "lmtp" ? `lmtp ${d.host}:${d.port}` : d.kind === "maildir" ? `maildir ${d.mailbox}` : `unroutable: ${replyText(d.reply)}`
        const dns = r.dns?.map((x) => `${x.type} ${x.name} ${x.rcode}${x.answers.length ? ` [${x.answers.join("; ")}]` : ""}`).join(" | ")
        return `<${r.rcpt}> ${where}${dns ? ` (dns: ${dns})` : ""}`
      }).join("; ")
    case "AttemptStarted":
      return `attempt ${e.attempt} to ${e.destination} for ${e.rcpts.length} recipient(s)`
    case "AttemptSucceeded":
    case "AttemptFailed":
      return `attempt ${e.attempt} via ${e.host}: ${replyText(e.reply)} for ${e.rcpts.join(", ")}`
    case "AttemptDeferred":
      return `attempt ${e.attempt} via ${e.host}: ${replyText(e.reply)} for ${e.rcpts.join(", ")}; ${e.nextAttemptAt === null ? "lifetime exceeded" : `next attempt in ${formatAge(e.nextAttemptAt - e.at)} at ${iso(e.nextAttemptAt)}`}`
    case "RecipientDelivered":
      return `<${e.rcpt}> delivered via ${e.host}: ${replyText(e.reply)}`
    case "RecipientBounced":
      return `<${e.rcpt}> bounced: ${replyText(e.reply)}`
    case "RecipientExpired":
      return `<${e.rcpt}> expired: ${replyText(e.reply)}`
    case "BounceQueued":
      return `DSN ${e.dsnId} queued for ${e.rcpts.join(", ")}`
    case "MessageCompleted":
      return `completed: ${e.delivered} delivered, ${e.bounced} bounced, ${e.expired} expired${e.deleted ? ", deleted by operator" : ""}`
    case "MessageHeld":
      return `held by ${e.by}: ${e.reason}`
    case "MessageReleased":
      return `released by ${e.by}`
    case "MessageDeleted":
      return `deleted by ${e.by}`
    case "RetryRequested":
      return `retry requested by ${e.by}`
  }
}

export const timeline = (events: ReadonlyArray<StoredEvent>): ReadonlyArray<TimelineEntry> => {
  const start = events[0]?.event.at ?? 0
  return events.map(({ event }) => ({ at: event.at, sinceStartMs: event.at - start, node: event.node, type: event.type, summary: describe(event), event }))
}

export const formatTimeline = (entries: ReadonlyArray<TimelineEntry>): string =>
  entries.map((t) => `${new Date(t.at).toISOString()}  +${(t.sinceStartMs / 1000).toFixed(3).padStart(10)}s  ${t.node.padEnd(12)}  ${t.type.padEnd(18)}  ${t.summary}`).join("\n")
