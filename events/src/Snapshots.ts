// The replay snapshots port: derived data that replay keeps beside a log without an index (JetStream) so that
// `replay queue --at` and `report` do not decode the whole log on every run. Two kinds, both per log segment of
// `every` positions: the set of message streams open after a segment (an open-set snapshot), and the segment's
// digest (the report's nine event types, each reduced to the facts the report folds: `Digested`). Stores and encodes
// only: when one is taken and how it is folded is `Replay.Log`'s (simulations). Losing any of it loses nothing but time.
import type { Message } from "@missive/core"
import type { StoredEvent } from "./EventStore.js"

export interface Snapshot {
  /** Every event at a position up to this one is folded in. */
  readonly position: number
  /**
   * The latest event time among them (among the digested types since digests came: arrivals and completions, all the
   * open set depends on, are among them): the snapshot answers for any moment at or after it.
   */
  readonly maxAt: number
  /** Streams received and not completed, each with the log position of its `MessageReceived`, in no order. */
  readonly open: ReadonlyArray<readonly [stream: string, first: number]>
}

export interface SnapshotStore {
  /** Take one every this many log positions (default: replay's `SNAPSHOT_EVERY`); tests take them closer. */
  readonly every?: number
  /** The snapshots held (position and newest event time), in no order. */
  list(): Promise<ReadonlyArray<{ readonly position: number; readonly maxAt: number }>>
  load(position: number): Promise<Snapshot | undefined>
  /** Idempotent: saving a position again (another replay run) keeps one. */
  save(s: Snapshot): Promise<void>
  /** The end positions of the segments whose digests are held, in no order. */
  listDigests(): Promise<ReadonlyArray<number>>
  /** A segment's digest as `encodeDigest` made it (undefined when it is not held, or only in part). */
  loadDigest(position: number): Promise<string | undefined>
  /** Idempotent, like `save`: the digest of the segment (position - every, position]. */
  saveDigest(position: number, digest: string): Promise<void>
  clear(): Promise<void>
  close(): Promise<void>
}

/** The event types a digest keeps: the ones `Replay.Report` folds. */
export const DIGESTED = [
  "MessageReceived",
  "AttemptStarted",
  "AttemptSucceeded",
  "AttemptFailed",
  "AttemptDeferred",
  "RecipientDelivered",
  "RecipientBounced",
  "RecipientExpired",
  "MessageCompleted"
] as const satisfies ReadonlyArray<Message.EventType>
export type DigestedType = (typeof DIGESTED)[number]

/** What the report reads of a reply: its codes (the text is not kept). */
export interface DigestedReply {
  readonly code: number
  readonly enhanced?: string | undefined
}

/**
 * An event of the digested types reduced to what the report folds. Every `Message.Event` of these types is one
 * (TypeScript checks it where the report folds both), so the report has one fold for raw events and digests.
 */
export type Digested =
  | { readonly type: "MessageReceived"; readonly at: number; readonly recipients: ReadonlyArray<string> }
  | { readonly type: "AttemptStarted"; readonly at: number; readonly rcpts: ReadonlyArray<string> }
  | {
      readonly type: "AttemptSucceeded" | "AttemptFailed"
      readonly at: number
      readonly rcpts: ReadonlyArray<string>
      readonly reply: DigestedReply
    }
  | {
      readonly type: "AttemptDeferred"
      readonly at: number
      readonly rcpts: ReadonlyArray<string>
      readonly reply: DigestedReply
      readonly nextAttemptAt: number | null
    }
  | { readonly type: "RecipientDelivered" | "RecipientBounced" | "RecipientExpired"; readonly at: number; readonly rcpt: string }
  | { readonly type: "MessageCompleted"; readonly at: number }

// Every event of the digested types is a `Digested` (this fails to compile the day one stops being one).
const _everyEventIsDigested = (e: Extract<Message.Event, { readonly type: DigestedType }>): Digested => e
void _everyEventIsDigested

export interface DigestedEvent {
  readonly stream: string
  readonly position: number
  readonly event: Digested
}

const CODE: Readonly<Record<DigestedType, number>> = Object.fromEntries(DIGESTED.map((t, i) => [t, i])) as Record<DigestedType, number>
const isDigestedType = (t: Message.EventType): t is DigestedType => t in CODE
/** Whether a digest keeps this event (its type is one the report folds). */
export const isDigested = (e: Message.Event): e is Extract<Message.Event, { readonly type: DigestedType }> => e.type in CODE

/**
 * The digest of a segment's events (in log order; other types are left out): JSON of a table of streams, one of
 * recipients, one of replies, and one flat array of numbers per event — position and time as differences from the
 * event before, stream, type, then the type's facts by table index. About a tenth of the events' own JSON.
 */
export const encodeDigest = (events: ReadonlyArray<StoredEvent>): string => {
  const streams: Array<string> = []
  const rcpts: Array<string> = []
  const replies: Array<[number, string] | [number]> = []
  const si = new Map<string, number>()
  const ri = new Map<string, number>()
  const pi = new Map<string, number>()
  const index = (m: Map<string, number>, list: Array<string>, s: string) => {
    let i = m.get(s)
    if (i === undefined) m.set(s, (i = list.push(s) - 1))
    return i
  }
  const reply = (r: DigestedReply) => {
    const k = r.enhanced === undefined ? `${r.code}` : `${r.code} ${r.enhanced}`
    let i = pi.get(k)
    if (i === undefined) pi.set(k, (i = replies.push(r.enhanced === undefined ? [r.code] : [r.code, r.enhanced]) - 1))
    return i
  }
  const e: Array<number | null> = []
  let position = 0
  let at = 0
  for (const s of events) {
    const ev = s.event
    if (!isDigestedType(ev.type)) continue
    e.push(s.position - position, index(si, streams, s.stream), CODE[ev.type], ev.at - at)
    position = s.position
    at = ev.at
    const list = (l: ReadonlyArray<string>) => {
      e.push(l.length)
      for (const r of l) e.push(index(ri, rcpts, r))
    }
    switch (ev.type) {
      case "MessageReceived":
        list(ev.recipients)
        break
      case "AttemptStarted":
        list(ev.rcpts)
        break
      case "AttemptSucceeded":
      case "AttemptFailed":
        e.push(reply(ev.reply))
        list(ev.rcpts)
        break
      case "AttemptDeferred":
        e.push(reply(ev.reply), ev.nextAttemptAt === null ? null : ev.nextAttemptAt - ev.at)
        list(ev.rcpts)
        break
      case "RecipientDelivered":
      case "RecipientBounced":
      case "RecipientExpired":
        e.push(index(ri, rcpts, ev.rcpt))
        break
      default:
        break
    }
  }
  return JSON.stringify({ v: 1, streams, rcpts, replies, e })
}

/** The events `encodeDigest` kept, in log order. Throws on a digest it cannot read (the caller reads the log instead). */
export const decodeDigest = (digest: string): Array<DigestedEvent> => {
  const d = JSON.parse(digest) as {
    v: number
    streams: Array<string>
    rcpts: Array<string>
    replies: Array<[number, string?]>
    e: Array<number | null>
  }
  if (d.v !== 1) throw new Error(`digest version ${d.v} unknown`)
  const { streams, rcpts, e } = d
  const replies: Array<DigestedReply> = d.replies.map(([code, enhanced]) => (enhanced === undefined ? { code } : { code, enhanced }))
  const out: Array<DigestedEvent> = []
  let position = 0
  let at = 0
  let i = 0
  const num = () => e[i++] as number
  const list = () => {
    const n = num()
    const l = new Array<string>(n)
    for (let k = 0; k < n; k++) l[k] = rcpts[num()]!
    return l
  }
  while (i < e.length) {
    position += num()
    const stream = streams[num()]!
    const type = DIGESTED[num()]!
    at += num()
    let event: Digested
    switch (type) {
      case "MessageReceived":
        event = { type, at, recipients: list() }
        break
      case "AttemptStarted":
        event = { type, at, rcpts: list() }
        break
      case "AttemptSucceeded":
      case "AttemptFailed": {
        const reply = replies[num()]!
        event = { type, at, reply, rcpts: list() }
        break
      }
      case "AttemptDeferred": {
        const reply = replies[num()]!
        const next = e[i++]
        event = { type, at, reply, nextAttemptAt: next === null || next === undefined ? null : at + next, rcpts: list() }
        break
      }
      case "RecipientDelivered":
      case "RecipientBounced":
      case "RecipientExpired":
        event = { type, at, rcpt: rcpts[num()]! }
        break
      case "MessageCompleted":
        event = { type, at }
        break
    }
    out.push({ stream, position, event })
  }
  return out
}

export const makeMemory = (every?: number): SnapshotStore => {
  const m = new Map<number, Snapshot>()
  const digests = new Map<number, string>()
  return {
    ...(every === undefined ? {} : { every }),
    list: async () => [...m.values()].map((s) => ({ position: s.position, maxAt: s.maxAt })),
    load: async (position) => m.get(position),
    save: async (s) => void m.set(s.position, { ...s, open: [...s.open] }),
    listDigests: async () => [...digests.keys()],
    loadDigest: async (position) => digests.get(position),
    saveDigest: async (position, digest) => {
      if (!digests.has(position)) digests.set(position, digest)
    },
    clear: async () => {
      m.clear()
      digests.clear()
    },
    close: async () => {}
  }
}
