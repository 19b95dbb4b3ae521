// The message actor's model: events, commands, state, and the pure decider (initialState, evolve, decide).
// No I/O, no clock, no randomness: time, ids and jitter arrive inside commands, so replay is exact.
import * as E from "fp-ts/lib/Either.js"
import { backoff, type RetryPolicy } from "./Policy.js"
import { classify, Replies, type Reply } from "./Reply.js"
import type { Destination, RouteDecision } from "./Route.js"
import type { SiteEvent } from "./Site.js"
import type { Trace } from "./Trace.js"

export const SCHEMA_VERSION = 1 as const

/** Facts every event carries: schema version, time (epoch ms), node, and the policy hash that decided. */
export interface Meta {
  readonly v: number
  readonly at: number
  readonly node: string
  readonly policy: string
}

export interface Client {
  readonly ip: string
  readonly helo: string
  readonly tls: boolean
  readonly user?: string | undefined
}

export type Event =
  | (Meta & {
      readonly type: "MessageReceived"
      readonly id: string
      /** "" is the null reverse-path (a DSN or other bounce). */
      readonly sender: string
      readonly recipients: ReadonlyArray<string>
      readonly size: number
      readonly digest: string
      readonly client: Client
      /** Set when this message is a DSN about another message. */
      readonly dsnOf?: string | undefined
    })
  | (Meta & { readonly type: "RecipientsRouted"; readonly routes: ReadonlyArray<RouteDecision> })
  | (Meta & {
      readonly type: "AttemptStarted"
      readonly attempt: number
      readonly rcpts: ReadonlyArray<string>
      readonly destination: string
    })
  | (Meta & {
      readonly type: "AttemptSucceeded"
      readonly attempt: number
      readonly rcpts: ReadonlyArray<string>
      readonly host: string
      readonly reply: Reply
      /** Hops tried and the TLS of the attempt (absent in events recorded before it was kept). */
      readonly trace?: Trace | undefined
    })
  | (Meta & {
      readonly type: "AttemptDeferred"
      readonly attempt: number
      readonly rcpts: ReadonlyArray<string>
      readonly host: string
      readonly reply: Reply
      /** null when the deferral ran out the queue lifetime. */
      readonly nextAttemptAt: number | null
      readonly trace?: Trace | undefined
    })
  | (Meta & {
      readonly type: "AttemptFailed"
      readonly attempt: number
      readonly rcpts: ReadonlyArray<string>
      readonly host: string
      readonly reply: Reply
      /** Hops tried and the TLS of the attempt (absent in events recorded before it was kept). */
      readonly trace?: Trace | undefined
    })
  | (Meta & { readonly type: "RecipientDelivered"; readonly rcpt: string; readonly host: string; readonly reply: Reply })
  | (Meta & { readonly type: "RecipientBounced"; readonly rcpt: string; readonly reply: Reply })
  | (Meta & { readonly type: "RecipientExpired"; readonly rcpt: string; readonly reply: Reply })
  | (Meta & { readonly type: "BounceQueued"; readonly dsnId: string; readonly rcpts: ReadonlyArray<string> })
  | (Meta & {
      readonly type: "MessageCompleted"
      readonly delivered: number
      readonly bounced: number
      readonly expired: number
      readonly deleted: boolean
    })
  | (Meta & { readonly type: "MessageHeld"; readonly by: string; readonly reason: string })
  | (Meta & FilterOutcome & { readonly type: "MessageFiltered"; readonly id: string })
  | (Meta & { readonly type: "MessageReleased"; readonly by: string })
  | (Meta & { readonly type: "MessageDeleted"; readonly by: string })
  | (Meta & { readonly type: "RetryRequested"; readonly by: string })
  /** The suppression list's own aggregate (stream `suppression`, core/src/Suppression.ts); no message's state. */
  | (Meta & {
      readonly type: "SuppressionAdded"
      readonly address: string
      readonly reason: SuppressionReason
      readonly by: string
      /** The message whose bounce or complaint put the address on the list. */
      readonly source?: string | undefined
      readonly detail?: string | undefined
    })
  | (Meta & { readonly type: "SuppressionRemoved"; readonly address: string; readonly by: string })
  /** The filter stage re-read its address maps (stream `filter`; no message's state): who asked and what was loaded. */
  | (Meta & {
      readonly type: "FilterReloaded"
      readonly by: string
      readonly filterPolicy: string
      readonly users: number
      readonly aliases: number
      readonly files: ReadonlyArray<string>
    })
  /** A feedback report (RFC 5965) about this message arrived: recorded on the message's stream, even completed. */
  | (Meta & {
      readonly type: "ComplaintReceived"
      /** The Message-ID of the report itself: the same report handled twice is recorded once. */
      readonly reportId: string
      readonly rcpts: ReadonlyArray<string>
      /** Feedback-Type: abuse, fraud, virus, other, not-spam. */
      readonly feedbackType: string
      readonly userAgent?: string | undefined
      readonly arrivalDate?: string | undefined
    })
  /** A delay notice (RFC 3464, Action: delayed) was queued for these recipients; never twice for one message. */
  | (Meta & { readonly type: "DelayNotified"; readonly dsnId: string; readonly rcpts: ReadonlyArray<string> })
  /** A site's shaping changes (core/src/Site.ts, stream `site-<name>`); no message's state. */
  | SiteEvent
  /**
   * A node started, or re-read its configuration file, with a policy hash the log had not recorded (stream `policy`;
   * no message's state): the configuration it read, every secret replaced, so that the hash on a message's events
   * can be read back as the policy behind it. `hash` is the one `policy` carries on the events made under it.
   */
  | (Meta & {
      readonly type: "PolicyActivated"
      readonly hash: string
      /** The configuration, redacted as the admin API's effective-config endpoint shows it. */
      readonly config: Readonly<Record<string, unknown>>
      readonly reason: "start" | "reload"
      /**
       * A reload's record of a file it does not apply (a reload applies the filter maps only): the key paths that
       * differ from the running configuration and take effect at the next start, which records the hash again
       * without it. Events keep the running hash until then. Absent: the configuration is in effect.
       */
      readonly awaitingRestart?: ReadonlyArray<string>
    })

/** Why an address is on the suppression list: a permanent bounce, a feedback report, or an operator. */
export type SuppressionReason = "bounce" | "complaint" | "manual"

// ---- the filter stage's facts (nodes/src/filter) -------------------------------------------------

/** What a filter wants done with the message; the stage takes the most severe (reject > tempfail > quarantine). */
export type FilterAction = "accept" | "add-headers" | "quarantine" | "tempfail" | "reject"

/** A DNS lookup a verdict rested on (SPF, DKIM keys, DMARC policy, DNSBL zones): enough to explain it later. */
export interface FilterEvidence {
  readonly name: string
  readonly type: string
  /** "NOERROR", "NXDOMAIN", "NODATA", "SERVFAIL", "TIMEOUT", ... */
  readonly rcode: string
  readonly answers: ReadonlyArray<string>
}

/** One filter's finding at one SMTP stage. */
export interface Verdict {
  /** The check: "spf", "dkim", "dmarc", "arc", "recipient", "sender", "rspamd", "clamav", "dnsbl", a hook's name. */
  readonly name: string
  readonly stage: "connect" | "helo" | "mail" | "rcpt" | "data"
  /** The check's own result word: "pass", "fail", "softfail", "none", "temperror", "permerror", "spam", "virus", ... */
  readonly result: string
  readonly score?: number | undefined
  readonly action: FilterAction
  /** The reply the filter asked for (reject / tempfail). */
  readonly reply?: Reply | undefined
  /** The checker's or scanner's own words (its reply line, the failing signature, the rewrite before → after). */
  readonly detail?: string | undefined
  readonly evidence?: ReadonlyArray<FilterEvidence> | undefined
}

/** An address the stage rewrote (aliases, virtual maps, canonical / masquerading), with before and after. */
export interface Rewrite {
  readonly kind: "sender" | "recipient"
  readonly before: string
  readonly after: ReadonlyArray<string>
  readonly by: string
}

/** Everything the filter stage decided about one message: every verdict, the action taken and the reply it gave. */
export interface FilterOutcome {
  readonly action: FilterAction
  readonly reply?: Reply | undefined
  readonly verdicts: ReadonlyArray<Verdict>
  readonly rewrites: ReadonlyArray<Rewrite>
  /** Hash of the filter policy that decided (the message's `policy` hashes the whole configuration). */
  readonly filterPolicy: string
}

export type EventType = Event["type"]
export type EventOf<T extends EventType> = Extract<Event, { type: T }>

export const EVENT_TYPES: ReadonlyArray<EventType> = [
  "MessageReceived",
  "RecipientsRouted",
  "AttemptStarted",
  "AttemptSucceeded",
  "AttemptDeferred",
  "AttemptFailed",
  "RecipientDelivered",
  "RecipientBounced",
  "RecipientExpired",
  "BounceQueued",
  "MessageCompleted",
  "MessageHeld",
  "MessageFiltered",
  "MessageReleased",
  "MessageDeleted",
  "RetryRequested",
  "SuppressionAdded",
  "SuppressionRemoved",
  "FilterReloaded",
  "ComplaintReceived",
  "DelayNotified",
  "SiteThrottled",
  "SiteSuspended",
  "SiteResumed",
  "PolicyActivated"
]

export type RecipientStatus = "pending" | "routed" | "attempting" | "deferred" | "delivered" | "bounced" | "expired"

export interface Recipient {
  readonly address: string
  readonly status: RecipientStatus
  readonly destination?: Destination | undefined
  readonly attempts: number
  /** The message-level number of the attempt this recipient is (or was last) in: only that attempt may report. */
  readonly attempt?: number | undefined
  /** When and by which node that attempt was started (a peer's attempt in flight is not due again until its lease ends). */
  readonly attemptAt?: number | undefined
  readonly attemptNode?: string | undefined
  readonly nextAttemptAt?: number | undefined
  readonly lastReply?: Reply | undefined
  readonly lastHost?: string | undefined
}

export const isTerminal = (s: RecipientStatus): boolean => s === "delivered" || s === "bounced" || s === "expired"

export interface Live {
  readonly id: string
  readonly sender: string
  readonly receivedAt: number
  readonly size: number
  readonly digest: string
  readonly client: Client
  readonly dsnOf?: string | undefined
  readonly recipients: ReadonlyArray<Recipient>
  readonly held: boolean
  /** Held by the filter stage (quarantine), not by an operator: listed by `queue list --quarantine`. */
  readonly quarantined?: string | undefined
  readonly attempts: number
  readonly bounceId?: string | undefined
  /** The delay notice's DSN id, once one was queued. */
  readonly delayNoticeId?: string | undefined
  /** Report ids of the feedback reports recorded about this message. */
  readonly complaints?: ReadonlyArray<string> | undefined
  readonly version: number
}

export type State =
  | { readonly status: "empty"; readonly version: number }
  | (Live & { readonly status: "active" })
  | (Live & { readonly status: "completed"; readonly deleted: boolean })

export const initialState: State = { status: "empty", version: 0 }

const setRcpt = (s: Live, addr: string, f: (r: Recipient) => Recipient): ReadonlyArray<Recipient> =>
  s.recipients.map((r) => (r.address === addr ? f(r) : r))

const setRcpts = (s: Live, addrs: ReadonlyArray<string>, f: (r: Recipient) => Recipient): ReadonlyArray<Recipient> => {
  const set = new Set(addrs)
  return s.recipients.map((r) => (set.has(r.address) ? f(r) : r))
}

/** Folds one event into the state. Total: an event that does not apply leaves the state as it was, version+1. */
export const evolve = (state: State, event: Event): State => {
  const version = state.version + 1
  if (event.type === "MessageReceived") {
    if (state.status !== "empty") return { ...state, version }
    return {
      status: "active",
      version,
      id: event.id,
      sender: event.sender,
      receivedAt: event.at,
      size: event.size,
      digest: event.digest,
      client: event.client,
      dsnOf: event.dsnOf,
      held: false,
      attempts: 0,
      recipients: event.recipients.map((address) => ({ address, status: "pending", attempts: 0 }))
    }
  }
  if (state.status === "empty") return { ...state, version }
  const s = state
  switch (event.type) {
    case "RecipientsRouted": {
      const byRcpt = new Map(event.routes.map((r) => [r.rcpt, r.destination]))
      return {
        ...s,
        version,
        recipients: s.recipients.map((r) =>
          byRcpt.has(r.address) && !isTerminal(r.status)
            ? { ...r, status: "routed", destination: byRcpt.get(r.address), nextAttemptAt: undefined }
            : r
        )
      }
    }
    case "AttemptStarted":
      return {
        ...s,
        version,
        attempts: Math.max(s.attempts, event.attempt),
        recipients: setRcpts(s, event.rcpts, (r) =>
          isTerminal(r.status)
            ? r
            : { ...r, status: "attempting", attempts: r.attempts + 1, attempt: event.attempt, attemptAt: event.at, attemptNode: event.node }
        )
      }
    case "AttemptSucceeded":
    case "AttemptFailed":
      return { ...s, version, recipients: setRcpts(s, event.rcpts, (r) => ({ ...r, lastReply: event.reply, lastHost: event.host })) }
    case "AttemptDeferred":
      return {
        ...s,
        version,
        recipients: setRcpts(s, event.rcpts, (r) =>
          isTerminal(r.status)
            ? r
            : {
                ...r,
                status: "deferred",
                lastReply: event.reply,
                lastHost: event.host,
                nextAttemptAt: event.nextAttemptAt ?? undefined
              }
        )
      }
    case "RecipientDelivered":
      return {
        ...s,
        version,
        recipients: setRcpt(s, event.rcpt, (r) =>
          isTerminal(r.status) ? r : { ...r, status: "delivered", lastReply: event.reply, lastHost: event.host, nextAttemptAt: undefined }
        )
      }
    case "RecipientBounced":
      return {
        ...s,
        version,
        recipients: setRcpt(s, event.rcpt, (r) =>
          isTerminal(r.status) ? r : { ...r, status: "bounced", lastReply: event.reply, nextAttemptAt: undefined }
        )
      }
    case "RecipientExpired":
      return {
        ...s,
        version,
        recipients: setRcpt(s, event.rcpt, (r) =>
          isTerminal(r.status) ? r : { ...r, status: "expired", lastReply: event.reply, nextAttemptAt: undefined }
        )
      }
    case "BounceQueued":
      return { ...s, version, bounceId: event.dsnId }
    case "MessageCompleted":
      return { ...s, version, status: "completed", deleted: event.deleted }
    case "MessageHeld":
      return { ...s, version, held: true }
    case "MessageFiltered":
      return event.action === "quarantine" ? { ...s, version, held: true, quarantined: quarantineReason(event) } : { ...s, version }
    case "MessageReleased":
      return { ...s, version, held: false, quarantined: undefined }
    case "MessageDeleted":
      return { ...s, version }
    case "RetryRequested":
      return {
        ...s,
        version,
        held: false,
        recipients: s.recipients.map((r) => (r.status === "deferred" ? { ...r, nextAttemptAt: event.at } : r))
      }
    case "SuppressionAdded":
    case "SuppressionRemoved":
    case "FilterReloaded":
      return { ...s, version }
    case "ComplaintReceived":
      return { ...s, version, complaints: [...(s.complaints ?? []), event.reportId] }
    case "DelayNotified":
      return { ...s, version, delayNoticeId: event.dsnId }
    case "SiteThrottled":
    case "SiteSuspended":
    case "SiteResumed":
    case "PolicyActivated":
      return { ...s, version }
  }
}

/** Why the filter stage quarantined a message: the verdicts that asked for it. */
export const quarantineReason = (o: FilterOutcome): string =>
  o.verdicts
    .filter((v) => v.action === "quarantine")
    .map((v) => `${v.name}=${v.result}`)
    .join(" ") || "quarantine"

export const fold = (events: ReadonlyArray<Event>, from: State = initialState): State => events.reduce(evolve, from)

// ---- commands ------------------------------------------------------------------------------------

/** What every command brings: the time, the node and the hash of the policy in force. */
export interface Ctx {
  readonly at: number
  readonly node: string
  readonly policy: string
}

export interface AttemptResult {
  readonly rcpt: string
  readonly reply: Reply
}

export type Command =
  | {
      readonly type: "Receive"
      readonly ctx: Ctx
      readonly id: string
      readonly sender: string
      readonly recipients: ReadonlyArray<string>
      readonly size: number
      readonly digest: string
      readonly client: Client
      readonly dsnOf?: string | undefined
      /** The filter stage's outcome (accept, add-headers or quarantine); recorded as MessageFiltered. */
      readonly filtered?: FilterOutcome | undefined
    }
  /** A message the filter stage refused at the end of DATA: only its MessageFiltered is recorded (no body, no work). */
  | { readonly type: "RecordRejection"; readonly ctx: Ctx; readonly id: string; readonly filtered: FilterOutcome }
  | { readonly type: "Route"; readonly ctx: Ctx; readonly routes: ReadonlyArray<RouteDecision>; readonly dsnId: string }
  | { readonly type: "StartAttempt"; readonly ctx: Ctx; readonly rcpts: ReadonlyArray<string>; readonly destination: string }
  | {
      readonly type: "ReportAttempt"
      readonly ctx: Ctx
      readonly attempt: number
      readonly host: string
      readonly results: ReadonlyArray<AttemptResult>
      /** What the attempt went through (hops, TLS): copied onto its Attempt* events. */
      readonly trace?: Trace | undefined
      readonly retry: RetryPolicy
      readonly jitter: number
      readonly dsnId: string
    }
  | { readonly type: "Expire"; readonly ctx: Ctx; readonly retry: RetryPolicy; readonly dsnId: string }
  | { readonly type: "Hold"; readonly ctx: Ctx; readonly by: string; readonly reason: string }
  | { readonly type: "Release"; readonly ctx: Ctx; readonly by: string }
  | { readonly type: "RetryNow"; readonly ctx: Ctx; readonly by: string }
  | { readonly type: "Delete"; readonly ctx: Ctx; readonly by: string }
  | { readonly type: "Bounce"; readonly ctx: Ctx; readonly by: string; readonly dsnId: string }
  /** Records a feedback report about the message (allowed on a completed message: reports come days later). */
  | {
      readonly type: "RecordComplaint"
      readonly ctx: Ctx
      readonly reportId: string
      readonly rcpts: ReadonlyArray<string>
      readonly feedbackType: string
      readonly userAgent?: string | undefined
      readonly arrivalDate?: string | undefined
    }
  /** Queues the delay notice when the message has waited `afterMs` with a recipient still deferred (once). */
  | { readonly type: "NotifyDelay"; readonly ctx: Ctx; readonly afterMs: number; readonly dsnId: string }

export type DecideError =
  | { readonly _tag: "MessageNotFound" }
  | { readonly _tag: "AlreadyReceived"; readonly id: string }
  | { readonly _tag: "MessageFinished"; readonly id: string }
  | { readonly _tag: "NoRecipients" }
  | { readonly _tag: "RecipientNotEligible"; readonly rcpt: string; readonly status: RecipientStatus | "unknown" }
  | { readonly _tag: "AttemptMismatch"; readonly expected: number; readonly got: number }
  | { readonly _tag: "MessageHeld"; readonly id: string }
  | { readonly _tag: "NotHeld"; readonly id: string }

type Decision = E.Either<DecideError, ReadonlyArray<Event>>

const meta = (ctx: Ctx): Meta => ({ v: SCHEMA_VERSION, at: ctx.at, node: ctx.node, policy: ctx.policy })

const fail = (e: DecideError): Decision => E.left(e)

/** Recipients that are waiting for a delivery attempt (due now or later). */
export const openRecipients = (s: Live): ReadonlyArray<Recipient> => s.recipients.filter((r) => !isTerminal(r.status))

/** Recipients that need routing at `now`: new ones, routed/attempting ones after a crash, due deferred ones. */
export const dueRecipients = (s: Live, now: number): ReadonlyArray<Recipient> =>
  s.recipients.filter(
    (r) =>
      r.status === "pending" ||
      r.status === "routed" ||
      r.status === "attempting" ||
      (r.status === "deferred" && (r.nextAttemptAt ?? 0) <= now)
  )

/** Earliest time any open recipient is due; undefined when none is open. */
export const nextDue = (s: Live): number | undefined => {
  let min: number | undefined
  for (const r of s.recipients) {
    if (isTerminal(r.status)) continue
    const due = r.status === "deferred" ? (r.nextAttemptAt ?? s.receivedAt) : s.receivedAt
    min = min === undefined ? due : Math.min(min, due)
  }
  return min
}

/** Events that close a message once every recipient is terminal: a DSN (never for a null sender) then completion. */
const finish = (s: Live, pending: ReadonlyArray<Event>, ctx: Ctx, dsnId: string): ReadonlyArray<Event> => {
  const after = fold(pending, { ...s, status: "active" })
  if (after.status !== "active" || openRecipients(after).length > 0) return pending
  const failed = after.recipients.filter((r) => r.status === "bounced" || r.status === "expired").map((r) => r.address)
  const out: Array<Event> = [...pending]
  if (failed.length > 0 && s.sender !== "" && s.dsnOf === undefined && s.bounceId === undefined)
    out.push({ ...meta(ctx), type: "BounceQueued", dsnId, rcpts: failed })
  out.push({
    ...meta(ctx),
    type: "MessageCompleted",
    deleted: false,
    delivered: after.recipients.filter((r) => r.status === "delivered").length,
    bounced: after.recipients.filter((r) => r.status === "bounced").length,
    expired: after.recipients.filter((r) => r.status === "expired").length
  })
  return out
}

export const decide = (command: Command, state: State): Decision => {
  if (command.type === "Receive") {
    if (state.status !== "empty") return fail({ _tag: "AlreadyReceived", id: command.id })
    if (command.recipients.length === 0) return fail({ _tag: "NoRecipients" })
    const { type: _t, ctx, filtered, ...rest } = command
    const received: Event = { ...meta(ctx), type: "MessageReceived", ...rest, recipients: [...new Set(rest.recipients)] }
    return E.right(filtered === undefined ? [received] : [received, { ...meta(ctx), type: "MessageFiltered", id: command.id, ...filtered }])
  }
  if (command.type === "RecordRejection") {
    if (state.status !== "empty") return fail({ _tag: "AlreadyReceived", id: command.id })
    return E.right([{ ...meta(command.ctx), type: "MessageFiltered", id: command.id, ...command.filtered }])
  }
  if (state.status === "empty") return fail({ _tag: "MessageNotFound" })
  if (command.type === "RecordComplaint") {
    if ((state.complaints ?? []).includes(command.reportId)) return E.right([])
    const { type: _t, ctx, ...rest } = command
    return E.right([{ ...meta(ctx), type: "ComplaintReceived", ...rest }])
  }
  if (state.status === "completed") return fail({ _tag: "MessageFinished", id: state.id })
  const s = state
  const ctx = command.ctx
  switch (command.type) {
    case "Route": {
      if (s.held) return fail({ _tag: "MessageHeld", id: s.id })
      const dupRoute = firstDuplicate(
        s,
        command.routes.map((r) => r.rcpt)
      )
      if (dupRoute) return fail(dupRoute)
      for (const r of command.routes) {
        const cur = s.recipients.find((x) => x.address === r.rcpt)
        if (!cur || isTerminal(cur.status)) return fail({ _tag: "RecipientNotEligible", rcpt: r.rcpt, status: cur?.status ?? "unknown" })
      }
      const events: Array<Event> = [{ ...meta(ctx), type: "RecipientsRouted", routes: command.routes }]
      for (const r of command.routes)
        if (r.destination.kind === "unroutable")
          events.push({ ...meta(ctx), type: "RecipientBounced", rcpt: r.rcpt, reply: r.destination.reply })
      return E.right(finish(s, events, ctx, command.dsnId))
    }
    case "StartAttempt": {
      if (s.held) return fail({ _tag: "MessageHeld", id: s.id })
      if (command.rcpts.length === 0) return fail({ _tag: "NoRecipients" })
      const dupStart = firstDuplicate(s, command.rcpts)
      if (dupStart) return fail(dupStart)
      for (const a of command.rcpts) {
        const cur = s.recipients.find((x) => x.address === a)
        if (!cur || cur.status !== "routed") return fail({ _tag: "RecipientNotEligible", rcpt: a, status: cur?.status ?? "unknown" })
      }
      return E.right([
        { ...meta(ctx), type: "AttemptStarted", attempt: s.attempts + 1, rcpts: command.rcpts, destination: command.destination }
      ])
    }
    case "ReportAttempt": {
      // Only an attempt this message started can report; the number is the one AttemptStarted carried.
      if (!Number.isInteger(command.attempt) || command.attempt < 1 || command.attempt > s.attempts)
        return fail({ _tag: "AttemptMismatch", expected: s.attempts, got: command.attempt })
      const dupReport = firstDuplicate(
        s,
        command.results.map((r) => r.rcpt)
      )
      if (dupReport) return fail(dupReport)
      for (const res of command.results) {
        const cur = s.recipients.find((x) => x.address === res.rcpt)
        if (!cur || cur.status !== "attempting")
          return fail({ _tag: "RecipientNotEligible", rcpt: res.rcpt, status: cur?.status ?? "unknown" })
        // A report of an older attempt (a stale driver whose recipient a peer has since attempted again) is refused.
        if (cur.attempt !== undefined && cur.attempt !== command.attempt)
          return fail({ _tag: "AttemptMismatch", expected: cur.attempt, got: command.attempt })
      }
      if (command.results.length === 0) return fail({ _tag: "NoRecipients" })
      const m = meta(ctx)
      const ok = command.results.filter((r) => classify(r.reply) === "success")
      const perm = command.results.filter((r) => classify(r.reply) === "permanent")
      const temp = command.results.filter((r) => classify(r.reply) === "transient")
      const base = { attempt: command.attempt, host: command.host, ...(command.trace ? { trace: command.trace } : {}) }
      const events: Array<Event> = []
      // Replies differ per recipient; one Attempt* event per distinct reply keeps each reply verbatim.
      for (const [reply, group] of groupByReply(ok)) {
        events.push({ ...m, ...base, type: "AttemptSucceeded", rcpts: group, reply })
        for (const rcpt of group) events.push({ ...m, type: "RecipientDelivered", rcpt, host: command.host, reply })
      }
      for (const [reply, group] of groupByReply(perm)) {
        events.push({ ...m, ...base, type: "AttemptFailed", rcpts: group, reply })
        for (const rcpt of group) events.push({ ...m, type: "RecipientBounced", rcpt, reply })
      }
      const expiresAt = s.receivedAt + command.retry.lifetimeMs
      for (const [reply, group] of groupByReply(temp)) {
        if (ctx.at >= expiresAt) {
          events.push({ ...m, ...base, type: "AttemptDeferred", rcpts: group, reply, nextAttemptAt: null })
          for (const rcpt of group) events.push({ ...m, type: "RecipientExpired", rcpt, reply })
        } else {
          const failures = Math.max(...group.map((a) => s.recipients.find((x) => x.address === a)?.attempts ?? 1))
          const next = Math.min(ctx.at + backoff(command.retry, failures, command.jitter), expiresAt)
          events.push({ ...m, ...base, type: "AttemptDeferred", rcpts: group, reply, nextAttemptAt: next })
        }
      }
      return E.right(finish(s, events, ctx, command.dsnId))
    }
    case "Expire": {
      if (ctx.at < s.receivedAt + command.retry.lifetimeMs) return E.right([])
      const events: Array<Event> = openRecipients(s).map((r) => ({
        ...meta(ctx),
        type: "RecipientExpired" as const,
        rcpt: r.address,
        reply: r.lastReply
          ? { ...Replies.expired, text: `${Replies.expired.text}; last reply: ${r.lastReply.code} ${r.lastReply.text}` }
          : Replies.expired
      }))
      return E.right(finish(s, events, ctx, command.dsnId))
    }
    case "Hold":
      return s.held ? E.right([]) : E.right([{ ...meta(ctx), type: "MessageHeld", by: command.by, reason: command.reason }])
    case "Release":
      return s.held ? E.right([{ ...meta(ctx), type: "MessageReleased", by: command.by }]) : fail({ _tag: "NotHeld", id: s.id })
    case "RetryNow":
      return E.right([{ ...meta(ctx), type: "RetryRequested", by: command.by }])
    case "Delete":
      return E.right([
        { ...meta(ctx), type: "MessageDeleted", by: command.by },
        {
          ...meta(ctx),
          type: "MessageCompleted",
          deleted: true,
          delivered: s.recipients.filter((r) => r.status === "delivered").length,
          bounced: s.recipients.filter((r) => r.status === "bounced").length,
          expired: s.recipients.filter((r) => r.status === "expired").length
        }
      ])
    case "Bounce": {
      const events: Array<Event> = openRecipients(s).map((r) => ({
        ...meta(ctx),
        type: "RecipientBounced" as const,
        rcpt: r.address,
        reply: Replies.operatorBounce(command.by)
      }))
      return E.right(finish(s, events, ctx, command.dsnId))
    }
    case "NotifyDelay":
      return delayNotice(s, command)
  }
}

/** Postfix's delay_warning_time: one notice per message, never about a DSN or to the null sender, only when due. */
const delayNotice = (s: Live, c: Extract<Command, { type: "NotifyDelay" }>): Decision => {
  if (s.delayNoticeId !== undefined || s.sender === "" || s.dsnOf !== undefined || c.ctx.at < s.receivedAt + c.afterMs) return E.right([])
  const rcpts = s.recipients.filter((r) => r.status === "deferred").map((r) => r.address)
  return rcpts.length === 0 ? E.right([]) : E.right([{ ...meta(c.ctx), type: "DelayNotified", dsnId: c.dsnId, rcpts }])
}

/** A recipient named twice in one command would get two outcomes (delivered and bounced) from one attempt. */
const firstDuplicate = (s: Live, rcpts: ReadonlyArray<string>): DecideError | undefined => {
  const seen = new Set<string>()
  for (const rcpt of rcpts) {
    if (seen.has(rcpt))
      return { _tag: "RecipientNotEligible", rcpt, status: s.recipients.find((x) => x.address === rcpt)?.status ?? "unknown" }
    seen.add(rcpt)
  }
  return undefined
}

const groupByReply = (results: ReadonlyArray<AttemptResult>): ReadonlyArray<readonly [Reply, ReadonlyArray<string>]> => {
  const groups = new Map<string, [Reply, Array<string>]>()
  for (const r of results) {
    const k = `${r.reply.code}|${r.reply.enhanced ?? ""}|${r.reply.text}|${r.reply.lines?.join("\n") ?? ""}`
    const g = groups.get(k)
    if (g) g[1].push(r.rcpt)
    else groups.set(k, [r.reply, [r.rcpt]])
  }
  return [...groups.values()]
}
