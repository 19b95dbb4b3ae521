// The ledger of a run: every lifecycle fact the simulated world observes — at the source (sent, accepted, refused by
// the target) and at the sinks (delivered to a simulated receiver, each reply a receiver gave, DSNs collected) — keyed
// by message tag and recipient, with times in scenario time. It judges nothing but the loss check; reports read it.

export interface RecipientRecord {
  readonly rcpt: string
  readonly tag: string
  readonly domain: string
  acceptedAt: number
  /** First delivery to a simulated receiver. */
  deliveredAt?: number | undefined
  deliveries: number
  /** A DSN with Action: failed reached the sender's receiver. */
  dsnAt?: number | undefined
  dsnStatus?: string | undefined
}

export interface Counters {
  sent: number
  accepted: number
  /** Submissions the target refused (4xx, 5xx) or that failed at the connection. */
  refused: number
  recipients: number
  delivered: number
  /** Recipients whose DSN said 5.x.x. */
  bounced: number
  /** Recipients whose DSN said 4.x.x (given up after the lifetime). */
  expired: number
  /** 4xx replies given by simulated receivers, plus transfers they cut. */
  deferred: number
  /** Deliveries beyond the first of the same recipient. */
  duplicates: number
  dsns: number
}

export interface DestinationStats {
  delivered: number
  bounced: number
  expired: number
  deferred: number
  rejected: number
  replies: Record<string, number>
}

export interface Sample {
  readonly at: number
  readonly accepted: number
  readonly delivered: number
  readonly resolved: number
  /** Accepted messages with at least one recipient neither delivered nor bounced. */
  readonly queued: number
}

export interface Ledger {
  readonly counters: Counters
  readonly recipients: ReadonlyMap<string, RecipientRecord>
  readonly destinations: ReadonlyMap<string, DestinationStats>
  /** Replies the target gave our senders, by code ("error" for a connection failure). */
  readonly sourceReplies: Record<string, number>
  /** Replies the simulated receivers gave, by code ("cut" for a transfer dropped in DATA). */
  readonly sinkReplies: Record<string, number>
  /** ms from send (or scheduled arrival) to the target's 250. */
  readonly acceptLatency: Array<number>
  /** ms from the target's 250 to the first delivery, per recipient. */
  readonly endToEnd: Array<number>
  readonly samples: Array<Sample>
  sent(): void
  accepted(tag: string, rcpts: ReadonlyArray<string>, at: number, latency: number): void
  refused(code: string): void
  reply(domain: string, code: number | "cut"): void
  delivered(rcpt: string, domain: string, at: number): void
  dsn(rcpt: string, status: string, at: number): void
  /** Accepted messages not yet fully resolved. */
  queued(): number
  /** Accepted recipients not yet resolved. */
  unresolved(): number
  sample(at: number): void
  /** Accepted recipients with neither a delivery nor a DSN. */
  lost(): ReadonlyArray<RecipientRecord>
}

const tagOf = (rcpt: string): string => {
  const local = rcpt.slice(0, rcpt.lastIndexOf("@"))
  return local.slice(local.indexOf(".") + 1)
}
const domainOf = (rcpt: string): string => rcpt.slice(rcpt.lastIndexOf("@") + 1).toLowerCase()

export const make = (): Ledger => {
  const counters: Counters = {
    sent: 0,
    accepted: 0,
    refused: 0,
    recipients: 0,
    delivered: 0,
    bounced: 0,
    expired: 0,
    deferred: 0,
    duplicates: 0,
    dsns: 0
  }
  const recipients = new Map<string, RecipientRecord>()
  /** Deliveries or DSNs that arrived before the source recorded the 250 (the target can be that fast). */
  const early = new Map<string, Array<(r: RecipientRecord) => void>>()
  const openByTag = new Map<string, number>()
  const destinations = new Map<string, DestinationStats>()
  const sourceReplies: Record<string, number> = {}
  const sinkReplies: Record<string, number> = {}
  const acceptLatency: Array<number> = []
  const endToEnd: Array<number> = []
  const samples: Array<Sample> = []
  let resolvedRecipients = 0

  const dest = (domain: string): DestinationStats => {
    let d = destinations.get(domain)
    if (!d) destinations.set(domain, (d = { delivered: 0, bounced: 0, expired: 0, deferred: 0, rejected: 0, replies: {} }))
    return d
  }
  const resolve = (r: RecipientRecord): void => {
    resolvedRecipients++
    const left = (openByTag.get(r.tag) ?? 1) - 1
    if (left <= 0) openByTag.delete(r.tag)
    else openByTag.set(r.tag, left)
  }
  const withRecord = (rcpt: string, f: (r: RecipientRecord) => void): void => {
    const r = recipients.get(rcpt.toLowerCase())
    if (r) return f(r)
    const waiting = early.get(rcpt.toLowerCase()) ?? []
    waiting.push(f)
    early.set(rcpt.toLowerCase(), waiting)
  }

  return {
    counters,
    recipients,
    destinations,
    sourceReplies,
    sinkReplies,
    acceptLatency,
    endToEnd,
    samples,
    sent: () => void counters.sent++,
    accepted: (tag, rcpts, at, latency) => {
      counters.accepted++
      sourceReplies["250"] = (sourceReplies["250"] ?? 0) + 1
      acceptLatency.push(latency)
      if (rcpts.length > 0) openByTag.set(tag, rcpts.length)
      for (const rcpt of rcpts) {
        const key = rcpt.toLowerCase()
        counters.recipients++
        const r: RecipientRecord = { rcpt: key, tag, domain: domainOf(key), acceptedAt: at, deliveries: 0 }
        recipients.set(key, r)
        for (const f of early.get(key) ?? []) f(r)
        early.delete(key)
      }
    },
    refused: (code) => {
      counters.refused++
      sourceReplies[code] = (sourceReplies[code] ?? 0) + 1
    },
    reply: (domain, code) => {
      const d = dest(domain)
      const key = String(code)
      d.replies[key] = (d.replies[key] ?? 0) + 1
      sinkReplies[key] = (sinkReplies[key] ?? 0) + 1
      if (code === "cut" || (code >= 400 && code < 500)) {
        counters.deferred++
        d.deferred++
      } else if (code >= 500) d.rejected++
    },
    delivered: (rcpt, domain, at) =>
      withRecord(rcpt, (r) => {
        r.deliveries++
        if (r.deliveries > 1) return void counters.duplicates++
        r.deliveredAt = at
        counters.delivered++
        dest(domain).delivered++
        endToEnd.push(Math.max(0, at - r.acceptedAt))
        if (r.dsnAt === undefined) resolve(r)
      }),
    dsn: (rcpt, status, at) => {
      counters.dsns++
      withRecord(rcpt, (r) => {
        if (r.dsnAt !== undefined) return
        r.dsnAt = at
        r.dsnStatus = status
        const d = dest(r.domain)
        if (status.startsWith("4")) {
          counters.expired++
          d.expired++
        } else {
          counters.bounced++
          d.bounced++
        }
        if (r.deliveredAt === undefined) resolve(r)
      })
    },
    queued: () => openByTag.size,
    unresolved: () => counters.recipients - resolvedRecipients,
    sample: (at) =>
      samples.push({
        at,
        accepted: counters.accepted,
        delivered: counters.delivered,
        resolved: resolvedRecipients,
        queued: openByTag.size
      }),
    lost: () => [...recipients.values()].filter((r) => r.deliveredAt === undefined && r.dsnAt === undefined)
  }
}

export { tagOf, domainOf }
