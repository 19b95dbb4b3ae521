// The replay snapshots port: derived data that replay keeps beside a log without an index (JetStream) so that
// `replay queue --at` and `report` do not decode the whole log on every run. Two kinds, both per log segment of
// `every` positions: the set of message streams open after a segment (an open-set snapshot), and the segment's
// digest (the report's nine event types, each reduced to the facts the report folds: `Digested`). Stores and encodes
// only: when one is taken and how it is folded is `Replay.Log`'s (simulations). Losing any of it loses nothing but time.
import type { Message } from "@missive/core"
import type { EventStore, StoredEvent } from "./EventStore.js"

/** Snapshots and digests are taken at multiples of this many log positions (JetStream: appends). */
export const EVERY = 5000

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
  /** Take one every this many log positions (default `EVERY`); tests take them closer. */
  readonly every?: number
  /** The snapshots held (position and newest event time), in no order. */
  list(): Promise<ReadonlyArray<{ readonly position: number; readonly maxAt: number }>>
  load(position: number): Promise<Snapshot | undefined>
  /** Idempotent: saving a position again (another replay run) keeps one. */
  save(s: Snapshot): Promise<void>
  /** The end positions of the segments whose digests are held, in no order. */
  listDigests(): Promise<ReadonlyArray<number>>
  /** A segment's digest as `encodeDigest` made it (undefined when it is not held, or only in part). */
  loadDigest(position: number): Promise<Uint8Array | undefined>
  /** Idempotent, like `save`: the digest of the segment (position - every, position]. */
  saveDigest(position: number, digest: Uint8Array): Promise<void>
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

/** Unsigned integers as LEB128 varints (arithmetic, not bit operations: times exceed 32 bits). */
class Varints {
  bytes = new Uint8Array(1 << 16)
  length = 0
  push(v: number) {
    if (this.length + 8 > this.bytes.length) {
      const b = new Uint8Array(this.bytes.length * 2)
      b.set(this.bytes)
      this.bytes = b
    }
    while (v >= 128) {
      this.bytes[this.length++] = (v % 128) | 128
      v = Math.floor(v / 128)
    }
    this.bytes[this.length++] = v
  }
  /** Signed, zigzagged. */
  pushSigned(v: number) {
    this.push(v >= 0 ? 2 * v : -2 * v - 1)
  }
}

/** The digest format's version, its first byte. */
const FORMAT = 1

/**
 * The digest of a segment's events (in log order; other types are left out): a version byte, the length (4 bytes,
 * little-endian) and JSON of three tables (streams, recipients, replies), then one varint sequence per event —
 * position and time as differences from the event before, stream, type, then the type's facts by table index. About
 * a twentieth of the events' own JSON before compression; decoding it costs no JSON parse of numbers.
 */
export const encodeDigest = (events: ReadonlyArray<StoredEvent>): Uint8Array => {
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
  const w = new Varints()
  const list = (l: ReadonlyArray<string>) => {
    w.push(l.length)
    for (const r of l) w.push(index(ri, rcpts, r))
  }
  let position = 0
  let at = 0
  for (const s of events) {
    const ev = s.event
    if (!isDigestedType(ev.type)) continue
    w.pushSigned(s.position - position)
    w.push(index(si, streams, s.stream))
    w.push(CODE[ev.type])
    w.pushSigned(ev.at - at)
    position = s.position
    at = ev.at
    switch (ev.type) {
      case "MessageReceived":
        list(ev.recipients)
        break
      case "AttemptStarted":
        list(ev.rcpts)
        break
      case "AttemptSucceeded":
      case "AttemptFailed":
        w.push(reply(ev.reply))
        list(ev.rcpts)
        break
      case "AttemptDeferred":
        w.push(reply(ev.reply))
        // 0: no next attempt (the lifetime ran out); otherwise 1 + the zigzagged delay.
        if (ev.nextAttemptAt === null) w.push(0)
        else {
          const d = ev.nextAttemptAt - ev.at
          w.push(1 + (d >= 0 ? 2 * d : -2 * d - 1))
        }
        list(ev.rcpts)
        break
      case "RecipientDelivered":
      case "RecipientBounced":
      case "RecipientExpired":
        w.push(index(ri, rcpts, ev.rcpt))
        break
      default:
        break
    }
  }
  const head = Buffer.from(JSON.stringify({ streams, rcpts, replies }))
  const out = new Uint8Array(5 + head.length + w.length)
  out[0] = FORMAT
  new DataView(out.buffer).setUint32(1, head.length, true)
  out.set(head, 5)
  out.set(w.bytes.subarray(0, w.length), 5 + head.length)
  return out
}

/** The events `encodeDigest` kept, in log order. Throws on a digest it cannot read (the caller reads the log instead). */
export const decodeDigest = (digest: Uint8Array): Array<DigestedEvent> => {
  if (digest[0] !== FORMAT) throw new Error(`digest format ${digest[0]} unknown`)
  const length = new DataView(digest.buffer, digest.byteOffset, digest.byteLength).getUint32(1, true)
  const d = JSON.parse(Buffer.from(digest.buffer, digest.byteOffset + 5, length).toString()) as {
    streams: Array<string>
    rcpts: Array<string>
    replies: Array<[number, string?]>
  }
  const { streams, rcpts } = d
  const replies: Array<DigestedReply> = d.replies.map(([code, enhanced]) => (enhanced === undefined ? { code } : { code, enhanced }))
  const b = digest
  const end = b.length
  let i = 5 + length
  const num = (): number => {
    let x = b[i++]!
    if (x < 128) return x
    let v = x & 127
    for (let m = 128; ; m *= 128) {
      if (i >= end) throw new Error("digest truncated")
      x = b[i++]!
      v += (x & 127) * m
      if (x < 128) return v
    }
  }
  const signed = () => {
    const v = num()
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2
  }
  const list = () => {
    const n = num()
    const l = new Array<string>(n)
    for (let k = 0; k < n; k++) l[k] = rcpts[num()]!
    return l
  }
  const out: Array<DigestedEvent> = []
  let position = 0
  let at = 0
  while (i < end) {
    position += signed()
    const stream = streams[num()]!
    const type = DIGESTED[num()]!
    at += signed()
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
        const next = num()
        const d = next === 0 ? 0 : (next - 1) % 2 === 0 ? (next - 1) / 2 : -next / 2
        event = { type, at, reply, nextAttemptAt: next === 0 ? null : at + d, rcpts: list() }
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
      default:
        throw new Error("digest holds an unknown event type")
    }
    if (stream === undefined) throw new Error("digest names an unknown stream")
    out.push({ stream, position, event })
  }
  return out
}

export const makeMemory = (every?: number): SnapshotStore => {
  const m = new Map<number, Snapshot>()
  const digests = new Map<number, Uint8Array>()
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

export interface Follower {
  /** Resolves when what has been handed so far is saved (tests). */
  readonly settled: () => Promise<void>
  readonly stop: () => void
}

/**
 * Keeps the digests and open-set snapshots current as the log grows, so that a replay over recent traffic finds them
 * made (a cluster node runs it on the log's tail it already decodes): from the newest snapshot below which every
 * segment has its digest (position 0 when there is none), folds the log and saves, at each segment's end, its digest
 * and the open set. Idempotent: several followers, or a replay run, saving the same segment keep one. Only appends
 * to the snapshot store; a save that fails is retried with the next segment's (the gap is filled by replay later).
 */
export const follow = async (
  store: EventStore,
  snapshots: SnapshotStore,
  o: { readonly onError?: (e: unknown) => void } = {}
): Promise<Follower> => {
  const every = snapshots.every ?? EVERY
  const digests = new Set(await snapshots.listDigests())
  let covered = 0
  while (digests.has(covered + every)) covered += every
  const base = [...(await snapshots.list())]
    .filter((s) => s.position <= covered)
    .sort((a, b) => a.position - b.position)
    .at(-1)
  const start = base ? await snapshots.load(base.position) : undefined
  const open = new Map(start?.open ?? [])
  let maxAt = start?.maxAt ?? 0
  let end = (start?.position ?? 0) + every
  let segment: Array<StoredEvent> = []
  let saving: Promise<void> = Promise.resolve()
  const close = () => {
    const s: Snapshot = { position: end, maxAt, open: [...open] }
    const digest = encodeDigest(segment)
    const position = end
    saving = saving
      .then(async () => {
        if (!digests.has(position)) await snapshots.saveDigest(position, digest)
        digests.add(position)
        await snapshots.save(s)
      })
      .catch((e: unknown) => o.onError?.(e))
    segment = []
    end += every
  }
  const stop = store.subscribe(start?.position ?? 0, (e) => {
    // A segment is saved when the first event after it comes.
    while (e.position > end) close()
    if (!isDigestedType(e.event.type)) return
    segment.push(e)
    if (e.event.type === "MessageReceived") open.set(e.stream, e.position)
    else if (e.event.type === "MessageCompleted") open.delete(e.stream)
    if (e.event.at > maxAt) maxAt = e.event.at
  })
  return { settled: () => saving, stop }
}
