// Event encoding: the Effect Schemas of every event (typed against core's Event so the two cannot drift),
// JSON encode/decode, and upcasting of older schema versions. Must not hold domain logic.
import type { Message } from "@missive/core"
import { Schema } from "effect"

const Reply = Schema.Struct({
  code: Schema.Number,
  enhanced: Schema.optional(Schema.String),
  text: Schema.String,
  lines: Schema.optional(Schema.Array(Schema.String))
})
const Meta = { v: Schema.Number, at: Schema.Number, node: Schema.String, policy: Schema.String }
const Strings = Schema.Array(Schema.String)
const Hop = Schema.Struct({ host: Schema.String, port: Schema.Number, preference: Schema.Number, name: Schema.optional(Schema.String) })
const Trace = Schema.Struct({
  hops: Schema.Array(
    Schema.Struct({
      hop: Schema.String,
      name: Schema.optional(Schema.String),
      outcome: Schema.Literals(["connected", "reused", "connect-failed", "tls-failed", "policy-excluded"]),
      detail: Schema.optional(Schema.String)
    })
  ),
  tls: Schema.optional(
    Schema.Struct({
      policy: Schema.Literals(["none", "opportunistic", "required", "mta-sts", "dane"]),
      mode: Schema.optional(Schema.String),
      tls: Schema.Boolean,
      version: Schema.optional(Schema.String),
      cipher: Schema.optional(Schema.String),
      verified: Schema.Boolean,
      reason: Schema.optional(Schema.String)
    })
  )
})
const Destination = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("maildir"), key: Schema.String, mailbox: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("lmtp"), key: Schema.String, host: Schema.String, port: Schema.Number }),
  Schema.Struct({ kind: Schema.Literal("smtp"), key: Schema.String, hops: Schema.Array(Hop), via: Schema.Literals(["route", "mx", "a"]) }),
  Schema.Struct({ kind: Schema.Literal("unroutable"), key: Schema.String, reply: Reply })
])
const Dns = Schema.Struct({ name: Schema.String, type: Schema.Literals(["MX", "A", "AAAA"]), rcode: Schema.String, answers: Strings })
const FilterAction = Schema.Literals(["accept", "add-headers", "quarantine", "tempfail", "reject"])
const Verdict = Schema.Struct({
  name: Schema.String,
  stage: Schema.Literals(["connect", "helo", "mail", "rcpt", "data"]),
  result: Schema.String,
  score: Schema.optional(Schema.Number),
  action: FilterAction,
  reply: Schema.optional(Reply),
  detail: Schema.optional(Schema.String),
  evidence: Schema.optional(
    Schema.Array(Schema.Struct({ name: Schema.String, type: Schema.String, rcode: Schema.String, answers: Strings }))
  )
})
const Rewrite = Schema.Struct({ kind: Schema.Literals(["sender", "recipient"]), before: Schema.String, after: Strings, by: Schema.String })
const Client = Schema.Struct({ ip: Schema.String, helo: Schema.String, tls: Schema.Boolean, user: Schema.optional(Schema.String) })

const ev = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ type: Schema.Literal(type), ...Meta, ...fields })

export const EventSchema = Schema.Union([
  ev("MessageReceived", {
    id: Schema.String,
    sender: Schema.String,
    recipients: Strings,
    size: Schema.Number,
    digest: Schema.String,
    client: Client,
    dsnOf: Schema.optional(Schema.String)
  }),
  ev("RecipientsRouted", {
    routes: Schema.Array(Schema.Struct({ rcpt: Schema.String, destination: Destination, dns: Schema.optional(Schema.Array(Dns)) }))
  }),
  ev("AttemptStarted", { attempt: Schema.Number, rcpts: Strings, destination: Schema.String }),
  ev("AttemptSucceeded", { attempt: Schema.Number, rcpts: Strings, host: Schema.String, reply: Reply, trace: Schema.optional(Trace) }),
  ev("AttemptDeferred", {
    attempt: Schema.Number,
    rcpts: Strings,
    host: Schema.String,
    reply: Reply,
    nextAttemptAt: Schema.NullOr(Schema.Number),
    trace: Schema.optional(Trace)
  }),
  ev("AttemptFailed", { attempt: Schema.Number, rcpts: Strings, host: Schema.String, reply: Reply, trace: Schema.optional(Trace) }),
  ev("RecipientDelivered", { rcpt: Schema.String, host: Schema.String, reply: Reply }),
  ev("RecipientBounced", { rcpt: Schema.String, reply: Reply }),
  ev("RecipientExpired", { rcpt: Schema.String, reply: Reply }),
  ev("BounceQueued", { dsnId: Schema.String, rcpts: Strings }),
  ev("MessageCompleted", { delivered: Schema.Number, bounced: Schema.Number, expired: Schema.Number, deleted: Schema.Boolean }),
  ev("MessageHeld", { by: Schema.String, reason: Schema.String }),
  ev("MessageFiltered", {
    id: Schema.String,
    action: FilterAction,
    reply: Schema.optional(Reply),
    verdicts: Schema.Array(Verdict),
    rewrites: Schema.Array(Rewrite),
    filterPolicy: Schema.String
  }),
  ev("MessageReleased", { by: Schema.String }),
  ev("MessageDeleted", { by: Schema.String }),
  ev("RetryRequested", { by: Schema.String }),
  ev("SuppressionAdded", {
    address: Schema.String,
    reason: Schema.Literals(["bounce", "complaint", "manual"]),
    by: Schema.String,
    source: Schema.optional(Schema.String),
    detail: Schema.optional(Schema.String)
  }),
  ev("SuppressionRemoved", { address: Schema.String, by: Schema.String }),
  ev("FilterReloaded", {
    by: Schema.String,
    filterPolicy: Schema.String,
    users: Schema.Number,
    aliases: Schema.Number,
    files: Strings
  }),
  ev("ComplaintReceived", {
    reportId: Schema.String,
    rcpts: Strings,
    feedbackType: Schema.String,
    userAgent: Schema.optional(Schema.String),
    arrivalDate: Schema.optional(Schema.String)
  }),
  ev("DelayNotified", { dsnId: Schema.String, rcpts: Strings }),
  ev("SiteThrottled", {
    site: Schema.String,
    rule: Schema.String,
    reply: Reply,
    until: Schema.Number,
    connections: Schema.optional(Schema.Number),
    perSecond: Schema.optional(Schema.Number),
    perHour: Schema.optional(Schema.Number)
  }),
  ev("SiteSuspended", { site: Schema.String, rule: Schema.String, reply: Reply, until: Schema.Number }),
  ev("SiteResumed", { site: Schema.String }),
  ev("PolicyActivated", {
    hash: Schema.String,
    config: Schema.Record(Schema.String, Schema.Unknown),
    reason: Schema.Literals(["start", "reload"]),
    awaitingRestart: Schema.optional(Schema.Array(Schema.String))
  })
])

// Compile-time guard: the schema's type and core's Event must stay mutually assignable.
type Decoded = typeof EventSchema.Type
const _toCore = (e: Decoded): Message.Event => e
const _fromCore = (e: Message.Event): Decoded => e
void _toCore
void _fromCore

const decodeStrict = Schema.decodeUnknownSync(EventSchema)

/**
 * Upcasters, one per historical version: raw JSON of version n → raw JSON of version n+1.
 * Version 0 was the pre-release shape (flat `time` instead of `at`, no policy hash).
 */
const upcasters: Record<number, (raw: Record<string, unknown>) => Record<string, unknown>> = {
  0: (raw) => {
    const { time, ...rest } = raw
    return {
      ...rest,
      v: 1,
      at: typeof time === "number" ? time : rest["at"],
      policy: rest["policy"] ?? "unknown",
      node: rest["node"] ?? "unknown"
    }
  }
}

export const upcast = (raw: Record<string, unknown>): Record<string, unknown> => {
  let r = raw
  let v = typeof r["v"] === "number" ? (r["v"] as number) : 0
  while (v < 1) {
    const f = upcasters[v]
    if (!f) throw new Error(`no upcaster from event schema version ${v}`)
    r = f(r)
    v = typeof r["v"] === "number" ? (r["v"] as number) : v + 1
  }
  return r
}

export const encode = (e: Message.Event): string => JSON.stringify(e)

/** Decodes a stored event: upcasts, then validates against the schema. */
export const decode = (json: string): Message.Event => decodeStrict(upcast(JSON.parse(json)))

/** Decodes an event this node wrote itself (upcast only, no validation): the hot path. */
export const decodeTrusted = (json: string): Message.Event => decodeTrustedValue(JSON.parse(json))

/** `decodeTrusted` of a value already parsed (an element of a JSON array holding several events). */
export const decodeTrustedValue = (value: unknown): Message.Event => {
  const raw = value as Record<string, unknown>
  return (raw["v"] === 1 ? raw : upcast(raw)) as unknown as Message.Event
}
