// Delivery events as SES publishes them, projected from the event log: Send, Delivery, Bounce (bounceType and
// bounceSubType), Complaint, DeliveryDelay (delayType) with SES's meaning, and Missive's own Deferred and Expired.
// A projection only: it reads a message's first events for its `mail` part and never writes; an event keeps the
// same id (its log position) however often it is projected, so a subscriber can drop the copies at-least-once gives.
import { Reply, type Message } from "@missive/core"
import { EventStore } from "@missive/events"

/** The detail keys, as a destination's `types` names them. */
export type Kind = "send" | "reject" | "delivery" | "bounce" | "complaint" | "deliveryDelay" | "deferred" | "expired" | "quarantined"

const EVENT_TYPE: Record<Kind, string> = {
  send: "Send",
  reject: "Reject",
  delivery: "Delivery",
  bounce: "Bounce",
  complaint: "Complaint",
  deliveryDelay: "DeliveryDelay",
  deferred: "Deferred",
  expired: "Expired",
  quarantined: "Quarantined"
}

/** The log event types the projection reads; every other type gives nothing (a follower need not decode it). */
export const SOURCE_TYPES = [
  "MessageReceived",
  "MessageFiltered",
  "RecipientDelivered",
  "RecipientBounced",
  "RecipientExpired",
  "AttemptDeferred",
  "ComplaintReceived"
] as const satisfies ReadonlyArray<Message.EventType>

export interface Mail {
  readonly timestamp: string
  readonly messageId: string
  readonly source: string
  readonly destination: ReadonlyArray<string>
  /** The authenticated user that submitted it (SES's sending account), when there was one. */
  readonly sendingAccountId?: string | undefined
  readonly sourceIp: string
}

export interface Published {
  /**
   * `<log position>`, `<log position>.<n>` when one log event gives several, and `<log position>:<k>` for the k-th of
   * several events of one append (a cluster's JetStream append: its events share one position): stable across replays.
   */
  readonly eventId: string
  readonly eventType: string
  readonly mail: Mail
  readonly [detail: string]: unknown
}

export interface Item {
  readonly kind: Kind
  readonly position: number
  readonly event: Published
}

export type BounceType = "Permanent" | "Transient" | "Undetermined"

/** Missive's own refusal of a listed recipient (Reply.Replies.suppressed). */
const isSuppressed = (r: Reply.Reply): boolean => r.code === 550 && r.text.startsWith("Recipient address suppressed")

/** SES's classification of a failed recipient by its reply. A Permanent bounce (not itself a suppression) suppresses. */
export const bounceOf = (r: Reply.Reply): { readonly bounceType: BounceType; readonly bounceSubType: string } => {
  const st = r.enhanced ?? ""
  if (isSuppressed(r)) return { bounceType: "Permanent", bounceSubType: "Suppressed" }
  // An expiry (Missive records it as 550 4.4.7, or the last 4xx) is SES's soft bounce after retrying.
  if (r.code < 500 || st.startsWith("4.")) return { bounceType: "Transient", bounceSubType: "General" }
  if (r.text.startsWith("Bounced by operator")) return { bounceType: "Undetermined", bounceSubType: "Undetermined" }
  if (st === "5.2.2") return { bounceType: "Transient", bounceSubType: "MailboxFull" }
  if (st === "5.3.4" || st === "5.2.3") return { bounceType: "Transient", bounceSubType: "MessageTooLarge" }
  if (st.startsWith("5.7.")) return { bounceType: "Transient", bounceSubType: "ContentRejected" }
  if (/^5\.1\.(0|1|2|3|6|10)$/.test(st)) return { bounceType: "Permanent", bounceSubType: "NoEmail" }
  return { bounceType: "Permanent", bounceSubType: "General" }
}

/** A recipient whose bounce puts the address on the suppression list (SES: a hard bounce). */
export const isHardBounce = (r: Reply.Reply): boolean => {
  const b = bounceOf(r)
  return b.bounceType === "Permanent" && b.bounceSubType !== "Suppressed"
}

/** SES's delayType of a deferral, by the reply and who gave it (`dns`: no MX or A answer yet; `local`: Missive). */
export const delayTypeOf = (r: Reply.Reply, host: string): string => {
  const st = r.enhanced ?? ""
  if (host === "dns") return "Undetermined"
  if (st === "4.2.2") return "MailboxFull"
  if (st.startsWith("4.7.")) return "IPFailure"
  if (st === "4.4.1" || st === "4.4.2" || r.code === 421) return "TransientCommunicationFailure"
  if (r.text.startsWith("Local delivery failed")) return "InternalFailure"
  if (st.startsWith("4.3.")) return "RecipientServerError"
  return "General"
}

const iso = (ms: number): string => new Date(ms).toISOString()

const diagnostic = (r: Reply.Reply): string => `smtp; ${Reply.format(r)}`

interface Context {
  readonly mail: Mail
  readonly receivedAt: number
  /**
   * Recipients already reported delayed, with the log position of the deferral that reported them (DeliveryDelay is
   * sent once per recipient, at its first deferral). A position, not a flag: a batch the destination refused is
   * projected again, and its first deferral must then give the same DeliveryDelay again.
   */
  readonly delayed: Map<string, number>
  /**
   * Recipients without a final outcome (delivered, bounced, expired) yet. Once none is left the context leaves the
   * cache: most messages are done within seconds, so the cache holds the messages in flight rather than the last
   * `cacheSize` ones. A later event of the message (a complaint, a batch projected again) reads the stream.
   */
  readonly open: Set<string>
}

export interface Projector {
  /** The published events of a batch of log events, in order. */
  project(batch: ReadonlyArray<EventStore.StoredEvent>): Promise<ReadonlyArray<Item>>
  /**
   * An item's event as JSON: exactly `JSON.stringify(item.event)`, with its `mail` part (the same for every event of
   * a message) serialised once per message rather than once per event.
   */
  encode(item: Item): string
}

/** A projector with a bounded cache of message contexts; a miss reads the message's stream. */
export const make = (events: EventStore.EventStore, reportingMta: string, lifetimeMs: number, cacheSize = 10_000): Projector => {
  const cache = new Map<string, Context>()
  const mailJson = new WeakMap<Mail, string>()

  const remember = (id: string, c: Context) => {
    cache.set(id, c)
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!)
  }

  const contextOf = (id: string, received: Message.EventOf<"MessageReceived">): Context => ({
    mail: {
      timestamp: iso(received.at),
      messageId: id,
      source: received.sender,
      destination: received.recipients,
      ...(received.client.user !== undefined ? { sendingAccountId: received.client.user } : {}),
      sourceIp: received.client.ip
    },
    receivedAt: received.at,
    delayed: new Map(),
    open: new Set(received.recipients)
  })

  /** A recipient's final outcome: the context is dropped once every recipient has one. */
  const settled = (id: string, c: Context, rcpt: string) => {
    c.open.delete(rcpt)
    if (c.open.size === 0) cache.delete(id)
  }

  /** A context from the stream itself: what it said before `version` (a restart's first sight of the message). */
  const load = async (id: string, version: number): Promise<Context | undefined> => {
    const stream = await events.read(EventStore.streamOf(id))
    const first = stream.find((e) => e.event.type === "MessageReceived")
    if (!first || first.event.type !== "MessageReceived") return undefined
    const c = contextOf(id, first.event)
    for (const e of stream) {
      if (e.version >= version) continue
      if (e.event.type === "AttemptDeferred" && e.event.nextAttemptAt !== null)
        for (const r of e.event.rcpts) if (!c.delayed.has(r)) c.delayed.set(r, e.position)
      if (e.event.type === "RecipientDelivered" || e.event.type === "RecipientBounced" || e.event.type === "RecipientExpired")
        c.open.delete(e.event.rcpt)
    }
    return c
  }

  return {
    encode: ({ kind, event }) => {
      let mail = mailJson.get(event.mail)
      if (mail === undefined) {
        mail = JSON.stringify(event.mail)
        mailJson.set(event.mail, mail)
      }
      // The key order of every Published event: eventId, eventType, mail, then its one detail (under its kind).
      return `{"eventId":${JSON.stringify(event.eventId)},"eventType":${JSON.stringify(event.eventType)},"mail":${mail},"${kind}":${JSON.stringify(event[kind])}}`
    },
    project: async (batch) => {
      const out: Array<Item> = []
      // The events of one JetStream append share its log position: the k-th event of SOURCE_TYPES at a position is
      // `<position>:<k>` (k > 0), so that a cluster's Send and Delivery from one append have ids of their own. Counted
      // over those types only, so the id is the same whether the follower handed every event or only those types.
      let at = -1
      let k = 0
      for (const stored of batch) {
        if (!stored.stream.startsWith("message-")) continue
        const e = stored.event
        if (!(SOURCE_TYPES as ReadonlyArray<string>).includes(e.type)) continue
        if (stored.position === at) k += 1
        else {
          at = stored.position
          k = 0
        }
        const base = k === 0 ? String(stored.position) : `${stored.position}:${k}`
        const id = EventStore.idOf(stored.stream)
        let c = cache.get(id)
        // The filter stage refused the message at DATA (no MessageReceived: nothing was accepted) or quarantined it.
        if (e.type === "MessageFiltered" && (e.action === "reject" || e.action === "quarantine")) {
          const kind: Kind = e.action === "reject" ? "reject" : "quarantined"
          const mail: Mail = c?.mail ?? { timestamp: iso(e.at), messageId: id, source: "", destination: [], sourceIp: "" }
          const reasons = e.verdicts.filter((v) => v.action === e.action).map((v) => `${v.name}=${v.result}`)
          out.push({
            kind,
            position: stored.position,
            event: {
              eventId: base,
              eventType: EVENT_TYPE[kind],
              mail,
              [kind]: { timestamp: iso(e.at), reason: reasons.join(" ") || e.action, ...(e.reply ? { reply: Reply.format(e.reply) } : {}) }
            }
          })
          continue
        }
        if (e.type === "MessageReceived") {
          c = contextOf(id, e)
          remember(id, c)
        }
        if (
          e.type !== "MessageReceived" &&
          e.type !== "RecipientDelivered" &&
          e.type !== "RecipientBounced" &&
          e.type !== "RecipientExpired" &&
          e.type !== "AttemptDeferred" &&
          e.type !== "ComplaintReceived"
        )
          continue
        if (!c) {
          c = await load(id, stored.version)
          if (!c) continue
          remember(id, c)
        }
        const ctx = c
        let n = 0
        const emit = (kind: Kind, detail: Record<string, unknown>) => {
          const eventId = n === 0 ? base : `${base}.${n}`
          n += 1
          out.push({ kind, position: stored.position, event: { eventId, eventType: EVENT_TYPE[kind], mail: ctx.mail, [kind]: detail } })
        }
        switch (e.type) {
          case "MessageReceived":
            emit("send", {})
            break
          case "RecipientDelivered":
            emit("delivery", {
              timestamp: iso(e.at),
              processingTimeMillis: e.at - ctx.receivedAt,
              recipients: [e.rcpt],
              smtpResponse: Reply.format(e.reply),
              remoteMtaIp: e.host.replace(/:\d+$/, "").replace(/^\[|\]$/g, ""),
              reportingMTA: reportingMta
            })
            settled(id, ctx, e.rcpt)
            break
          case "RecipientBounced":
          case "RecipientExpired": {
            emit("bounce", {
              ...bounceOf(e.reply),
              bouncedRecipients: [
                {
                  emailAddress: e.rcpt,
                  action: "failed",
                  status: e.reply.enhanced ?? `${Math.floor(e.reply.code / 100)}.0.0`,
                  diagnosticCode: diagnostic(e.reply)
                }
              ],
              timestamp: iso(e.at),
              feedbackId: `${stored.position}@${reportingMta}`,
              reportingMTA: `dns; ${reportingMta}`
            })
            if (e.type === "RecipientExpired")
              emit("expired", {
                timestamp: iso(e.at),
                recipient: e.rcpt,
                lastReply: Reply.format(e.reply),
                queuedForMillis: e.at - ctx.receivedAt
              })
            settled(id, ctx, e.rcpt)
            break
          }
          case "ComplaintReceived":
            emit("complaint", {
              complainedRecipients: e.rcpts.map((emailAddress) => ({ emailAddress })),
              timestamp: iso(e.at),
              feedbackId: e.reportId,
              complaintFeedbackType: e.feedbackType,
              ...(e.userAgent !== undefined ? { userAgent: e.userAgent } : {}),
              ...(e.arrivalDate !== undefined ? { arrivalDate: e.arrivalDate } : {})
            })
            break
          case "AttemptDeferred": {
            if (e.nextAttemptAt === null) break
            const first = e.rcpts.filter((r) => (ctx.delayed.get(r) ?? stored.position) >= stored.position)
            for (const r of first) ctx.delayed.set(r, Math.min(ctx.delayed.get(r) ?? stored.position, stored.position))
            if (first.length > 0)
              emit("deliveryDelay", {
                timestamp: iso(e.at),
                delayType: delayTypeOf(e.reply, e.host),
                expirationTime: iso(ctx.receivedAt + lifetimeMs),
                delayedRecipients: first.map((r) => ({
                  emailAddress: r,
                  status: e.reply.enhanced ?? "4.0.0",
                  diagnosticCode: diagnostic(e.reply)
                })),
                reportingMTA: reportingMta
              })
            emit("deferred", {
              timestamp: iso(e.at),
              attempt: e.attempt,
              recipients: e.rcpts,
              host: e.host,
              reply: Reply.format(e.reply),
              nextAttemptAt: iso(e.nextAttemptAt)
            })
            break
          }
        }
      }
      return out
    }
  }
}
