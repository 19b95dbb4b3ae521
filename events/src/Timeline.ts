// `missive replay timeline ID`: every event of one message in order, with its time, node and policy hash, what was
// decided and why (routes with their DNS answers, each attempt with the remote host and its full reply, the delay
// before the next attempt), relative times and the gap since the previous event. Reads one stream; never writes.
// The one timeline view: `missive queue show` (embedded and cluster) prints it too, and simulations re-export it as
// `Replay.Timeline`. Here, below simulations, so that `queue show` does not load the simulated world.
import { Message, Reply, Trace } from "@missive/core"
import * as EventStore from "./EventStore.js"
import * as QueueView from "./QueueView.js"

export const iso = (ms: number): string => new Date(ms).toISOString()

/** "1.2s", "3m04s", "2h05m": a duration for people. */
export const formatDuration = (ms: number): string => {
  const neg = ms < 0
  const a = Math.abs(ms)
  const s =
    a < 1000
      ? `${Math.round(a)}ms`
      : a < 60_000
        ? `${(a / 1000).toFixed(1)}s`
        : a < 3_600_000
          ? `${Math.floor(a / 60_000)}m${String(Math.floor((a % 60_000) / 1000)).padStart(2, "0")}s`
          : a < 86_400_000
            ? `${Math.floor(a / 3_600_000)}h${String(Math.floor((a % 3_600_000) / 60_000)).padStart(2, "0")}m`
            : `${Math.floor(a / 86_400_000)}d${String(Math.floor((a % 86_400_000) / 3_600_000)).padStart(2, "0")}h`
  return neg ? `-${s}` : s
}

export interface Entry {
  readonly position: number
  readonly version: number
  readonly at: number
  readonly time: string
  /** Since the first event of the message, ms. */
  readonly sinceStartMs: number
  /** Since the previous event, ms. */
  readonly sincePreviousMs: number
  readonly node: string
  readonly policy: string
  readonly type: Message.EventType
  readonly summary: string
  /** For attempt outcomes: how long the attempt took (since its AttemptStarted), ms. */
  readonly attemptMs?: number | undefined
  /** For deferrals: the delay chosen before the next attempt, ms (null: the lifetime ran out). */
  readonly nextDelayMs?: number | null | undefined
  readonly event: Message.Event
}

export interface Timeline {
  readonly id: string
  readonly entries: ReadonlyArray<Entry>
  /** The folded state at the end of the stream. */
  readonly state: Message.State
  /** Ids of related messages: the DSN this message caused, or the message this DSN reports on. */
  readonly related: ReadonlyArray<string>
}

/** A reply, and when it came on several lines, each line as the remote server sent it. */
const whole = (r: Reply.Reply): string =>
  r.lines && r.lines.length > 1 ? `${Reply.format(r)} [${r.lines.length} lines: ${r.lines.join(" | ")}]` : Reply.format(r)

/** An attempt's hops tried and TLS outcome, when recorded. */
const traced = (t: Trace.Trace | undefined): string => (t ? `; ${Trace.format(t)}` : "")

/** One line on what an event records: addresses, routes with their DNS answers, hosts and full replies, who asked. */
export const describe = (e: Message.Event): string => {
  switch (e.type) {
    case "MessageReceived":
      return `from <${e.sender}> to ${e.recipients.map((r) => `<${r}>`).join(", ")}, ${e.size} bytes, client ${e.client.ip} (helo ${e.client.helo}${e.client.tls ? ", TLS" : ""}${e.client.user ? `, auth ${e.client.user}` : ""})${e.dsnOf ? `, DSN for ${e.dsnOf}` : ""}`
    case "RecipientsRouted":
      return e.routes
        .map((r) => {
          const d = r.destination
          const where =
            d.kind === "smtp"
              ? `${d.via} ${d.key} -> ${d.hops.map((h) => `${h.host}:${h.port}`).join(", ") || "(no hosts)"}`
              : d.kind === "lmtp"
                ? `lmtp ${d.host}:${d.port}`
                : d.kind === "maildir"
                  ? `maildir ${d.mailbox}`
                  : `unroutable: ${Reply.format(d.reply)}`
          const dns = r.dns?.map((x) => `${x.type} ${x.name} ${x.rcode}${x.answers.length ? ` [${x.answers.join("; ")}]` : ""}`).join(" | ")
          return `<${r.rcpt}> ${where}${dns ? ` (dns: ${dns})` : ""}`
        })
        .join("; ")
    case "AttemptStarted":
      return `attempt ${e.attempt} to ${e.destination} for ${e.rcpts.length} recipient(s)`
    case "AttemptSucceeded":
    case "AttemptFailed":
      return `attempt ${e.attempt} via ${e.host}: ${whole(e.reply)} for ${e.rcpts.join(", ")}${traced(e.trace)}`
    case "AttemptDeferred":
      return `attempt ${e.attempt} via ${e.host}: ${whole(e.reply)} for ${e.rcpts.join(", ")}; ${e.nextAttemptAt === null ? "lifetime exceeded" : `next attempt in ${QueueView.formatAge(e.nextAttemptAt - e.at)} at ${iso(e.nextAttemptAt)}`}${traced(e.trace)}`
    case "RecipientDelivered":
      return `<${e.rcpt}> delivered via ${e.host}: ${Reply.format(e.reply)}`
    case "RecipientBounced":
      return `<${e.rcpt}> bounced: ${Reply.format(e.reply)}`
    case "RecipientExpired":
      return `<${e.rcpt}> expired: ${Reply.format(e.reply)}`
    case "BounceQueued":
      return `DSN ${e.dsnId} queued for ${e.rcpts.join(", ")}`
    case "MessageCompleted":
      return `completed: ${e.delivered} delivered, ${e.bounced} bounced, ${e.expired} expired${e.deleted ? ", deleted by operator" : ""}`
    case "MessageHeld":
      return `held by ${e.by}: ${e.reason}`
    case "MessageFiltered":
      return `filtered: ${e.action}${e.reply ? ` (${Reply.format(e.reply)})` : ""}; ${e.verdicts.map((v) => `${v.name}=${v.result}${v.score !== undefined ? ` (${v.score})` : ""}`).join(" ") || "no verdicts"}${e.rewrites.map((r) => `; ${r.kind} ${r.before} -> ${r.after.join(", ")} (${r.by})`).join("")}`
    case "MessageReleased":
      return `released by ${e.by}`
    case "MessageDeleted":
      return `deleted by ${e.by}`
    case "RetryRequested":
      return `retry requested by ${e.by}`
    case "SuppressionAdded":
      return `<${e.address}> suppressed (${e.reason}) by ${e.by}${e.source ? ` after ${e.source}` : ""}`
    case "SuppressionRemoved":
      return `<${e.address}> removed from the suppression list by ${e.by}`
    case "FilterReloaded":
      return `filter maps reloaded by ${e.by}: ${e.users} users, ${e.aliases} aliases${e.files.length ? ` (files ${e.files.join(", ")})` : ""}, filter policy ${e.filterPolicy}`
    case "ComplaintReceived":
      return `complaint (${e.feedbackType}) about ${e.rcpts.map((r) => `<${r}>`).join(", ") || "the message"}: report ${e.reportId}`
    case "DelayNotified":
      return `delay notice ${e.dsnId} queued for ${e.rcpts.join(", ")}`
    case "SiteThrottled":
      return `site ${e.site} throttled until ${iso(e.until)} (${[
        e.connections !== undefined ? `${e.connections} connection(s)` : "",
        e.perSecond !== undefined ? `${e.perSecond}/s` : "",
        e.perHour !== undefined ? `${e.perHour}/h` : ""
      ]
        .filter((x) => x)
        .join(", ")}) after ${Reply.format(e.reply)} (rule /${e.rule}/)`
    case "SiteSuspended":
      return `site ${e.site} suspended until ${iso(e.until)} after ${Reply.format(e.reply)} (rule /${e.rule}/)`
    case "SiteResumed":
      return `site ${e.site} resumed`
    case "PolicyActivated":
      return `policy ${e.hash} activated at ${e.reason} (show it: missive replay policy ${e.hash})`
  }
}

export const build = (id: string, events: ReadonlyArray<EventStore.StoredEvent>): Timeline => {
  const start = events[0]?.event.at ?? 0
  let prev = start
  const startedAt = new Map<number, number>()
  const related: Array<string> = []
  const entries = events.map(({ position, version, event: e }): Entry => {
    let attemptMs: number | undefined
    let nextDelayMs: number | null | undefined
    if (e.type === "AttemptStarted") startedAt.set(e.attempt, e.at)
    if (e.type === "AttemptSucceeded" || e.type === "AttemptFailed" || e.type === "AttemptDeferred") {
      const s = startedAt.get(e.attempt)
      if (s !== undefined) attemptMs = e.at - s
    }
    if (e.type === "AttemptDeferred") nextDelayMs = e.nextAttemptAt === null ? null : e.nextAttemptAt - e.at
    if (e.type === "BounceQueued") related.push(e.dsnId)
    if (e.type === "MessageReceived" && e.dsnOf) related.push(e.dsnOf)
    const entry: Entry = {
      position,
      version,
      at: e.at,
      time: iso(e.at),
      sinceStartMs: e.at - start,
      sincePreviousMs: e.at - prev,
      node: e.node,
      policy: e.policy,
      type: e.type,
      summary: describe(e),
      attemptMs,
      nextDelayMs,
      event: e
    }
    prev = e.at
    return entry
  })
  return { id, entries, state: Message.fold(events.map((e) => e.event)), related }
}

/** A message's timeline by its id; a site's shaping changes by its stream name ("site-…"). */
export const load = async (store: EventStore.EventStore, id: string): Promise<Timeline> =>
  build(id, await store.read(id.startsWith("site-") ? id : EventStore.streamOf(id)))

const rcptLines = (s: Message.State): Array<string> =>
  s.status === "empty"
    ? []
    : s.recipients.map(
        (r) =>
          `  ${r.address}: ${r.status}, ${r.attempts} attempt(s)${r.lastHost ? `, last host ${r.lastHost}` : ""}${r.lastReply ? `, last reply "${Reply.format(r.lastReply)}"` : ""}`
      )

/** Human-readable: one line per event, then details (DNS, replies, delays), then the outcome per recipient. */
export const format = (t: Timeline): string => {
  const out: Array<string> = [
    `message ${t.id}: ${t.entries.length} events${t.entries.length ? `, ${iso(t.entries[0]!.at)} .. ${iso(t.entries[t.entries.length - 1]!.at)} (${formatDuration(t.entries[t.entries.length - 1]!.sinceStartMs)})` : ""}`
  ]
  const nodes = [...new Set(t.entries.map((e) => e.node))]
  const policies = [...new Set(t.entries.map((e) => e.policy))]
  out.push(`nodes: ${nodes.join(", ")}; policy: ${policies.join(", ")}`)
  // The policy behind the decisions: each hash's configuration is in the log (PolicyActivated) when a node recorded it.
  const under = (type: Message.EventType) => t.entries.find((e) => e.type === type)?.policy
  const received = under("MessageReceived")
  const routed = under("RecipientsRouted")
  if (received !== undefined || routed !== undefined)
    out.push(
      `received under policy ${received ?? "-"}, routed under policy ${routed ?? "-"} (see one: missive replay policy ${received ?? routed})`
    )
  out.push("")
  out.push(
    `${"#".padStart(3)}  ${"TIME".padEnd(24)}  ${"+START".padStart(9)}  ${"+PREV".padStart(8)}  ${"NODE".padEnd(12)}  ${"EVENT".padEnd(18)}  DETAIL`
  )
  t.entries.forEach((e, i) => {
    const extra = [
      e.attemptMs !== undefined ? `took ${formatDuration(e.attemptMs)}` : undefined,
      e.nextDelayMs !== undefined
        ? e.nextDelayMs === null
          ? "no retry: lifetime exceeded"
          : `next attempt after ${formatDuration(e.nextDelayMs)}`
        : undefined
    ].filter((x) => x !== undefined)
    out.push(
      `${String(i + 1).padStart(3)}  ${e.time.padEnd(24)}  ${`+${formatDuration(e.sinceStartMs)}`.padStart(9)}  ${`+${formatDuration(e.sincePreviousMs)}`.padStart(8)}  ${e.node.padEnd(12)}  ${e.type.padEnd(18)}  ${e.summary}${extra.length ? ` [${extra.join("; ")}]` : ""}`
    )
  })
  out.push("")
  out.push(`state: ${t.state.status}${t.state.status !== "empty" && t.state.held ? " (held)" : ""}`)
  out.push(...rcptLines(t.state))
  if (t.related.length) out.push(`related: ${t.related.join(", ")}`)
  return out.join("\n")
}

export const toJson = (t: Timeline): unknown => ({ id: t.id, related: t.related, state: t.state, entries: t.entries })
