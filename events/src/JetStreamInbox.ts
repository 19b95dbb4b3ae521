// The cluster's accept commit: a message accepted by intake is ONE JetStream publish — its first events
// (`MessageReceived`) and its body in one stream message, the "carrier" — to one of S work-queue streams (shards,
// `<PREFIX>_INBOX_<k>`, R3). A replica quorum has it (fsync'd with `sync_interval: always`) before the ack, so the
// ack is the commit point of a `250`; nothing else is written at intake, so a `451` leaves nothing that lives on.
// The carrier stays until the message completes (the driver acks it, which removes it: work-queue retention), so
// it is at once the message's work entry and its body. Wake tokens (`<p>.wake.<k>.<id>`, no body) ask for a drive
// of a message whose carrier waits elsewhere. Must not decide or schedule: nodes/src/scheduler drives the shards'
// consumer; this module only stores, finds and removes.
//
// Group commit: accepts that arrive while this node's publishes are in flight wait and go out together as one
// *batch carrier* (`<p>.inb.<k>.<batch>`: the carriers of several messages in one stream message, so one replicated,
// fsynced write instead of one each). A batch is its members' shared work entry: the driver acks it once every
// member has completed or been given a carrier of its own (a deferred member is split out, `split`). An accept
// alone (nothing else waiting), a large body, or a keyed accept (an id that a retry must deduplicate, e.g. a DSN)
// is a single carrier as before.
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node"
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg
} from "@nats-io/jetstream"
import { Hash, type Message } from "@missive/core"
import { decodeTrustedValue, encode } from "./Codec.js"
import { isAlreadyExists, isGone, unavailable } from "./internal/NatsFault.js"

export interface InboxOptions {
  readonly nc: NatsConnection
  readonly prefix?: string
  readonly replicas?: number
  /** Number of shards (streams); an accept tries the next shard when one does not answer. */
  readonly shards?: number
  /** The consumer's AckWait: how long a driver holds a message without an in-progress ack (the lease). */
  readonly ackWaitMs?: number
  /** Publish ack timeout per shard, ms. */
  readonly timeoutMs?: number
  /** Bodies above this size go to the object store first; the carrier then holds only the digest. */
  readonly inlineMax?: number
  /** How long an accept commit keeps trying the shards before it gives up (the client then gets 451). */
  readonly commitBudgetMs?: number
  /** Publishes of accept commits in flight at once; accepts arriving meanwhile wait and form batches. */
  readonly commitsInFlight?: number
  /** At most this many members, and this many bytes of bodies, in one batch carrier. */
  readonly batchMax?: number
  readonly batchBytes?: number
}

/** What a carrier holds: the message's first events and, for bodies up to `inlineMax`, the body. */
export interface Carrier {
  readonly id: string
  readonly events: ReadonlyArray<Message.Event>
  /** Undefined when the body lives in the object store (large bodies). */
  readonly body: Buffer | undefined
}

/** A stored entry of a shard, for views (`queue list`) and for removal by sequence. */
export interface Entry {
  readonly shard: number
  readonly seq: number
  readonly kind: "carrier" | "wake"
  readonly id: string
  /** When the message was accepted (carriers) or the wake was asked for. */
  readonly at: number
  /** A batch member's first events (read with the batch, so a view need not find it again). */
  readonly events?: ReadonlyArray<Message.Event>
}

/** A member of a batch carrier as the driver gets it. */
export interface Member extends Carrier {
  readonly body: Buffer
}

export interface CommitOptions {
  /** The id was given by the caller (a retry commits it again): a single carrier, deduplicated by Nats-Msg-Id. */
  readonly keyed?: boolean
}

/** A carrier found in the inbox; `inBatch` when it is a member of a batch carrier (which holds others too). */
export interface Found extends Carrier {
  readonly shard: number
  readonly seq: number
  readonly inBatch: boolean
}

export interface Inbox {
  readonly shards: number
  readonly streams: ReadonlyArray<string>
  /** The consumer's name in every shard. */
  readonly consumer: string
  readonly ackWaitMs: number
  /** True when this open created the shards (the first node of a new cluster). */
  readonly created: boolean
  /** The accept commit: resolves once a shard's quorum has the carrier; rejects with StoreUnavailable otherwise. */
  commit(
    id: string,
    events: ReadonlyArray<Message.Event>,
    body: Buffer | undefined,
    options?: CommitOptions
  ): Promise<{ shard: number; seq: number }>
  /**
   * Gives a member of a batch carrier its own carrier, delivered no earlier than `dueAt` (a deferred member: the
   * batch can then be acked without it). Deduplicated by Nats-Msg-Id, so a peer that splits it again after a
   * failover does not make a second one.
   */
  split(member: Carrier, inline: boolean, dueAt: number): Promise<void>
  /** Asks for a drive of `id` at `dueAt` (a node drives it when the token is delivered; the token is not its body). */
  wake(id: string, dueAt: number): Promise<void>
  /** The carrier of `id`, wherever it is (null when none: completed or never committed). */
  find(id: string): Promise<Found | null>
  /** Removes a stored entry (a carrier held by no one here, when its message completed on another token). */
  remove(shard: number, seq: number): Promise<void>
  /** Every entry of every shard, oldest first (reads the streams: for the CLI and tests, not the hot path). */
  list(limit: number): Promise<ReadonlyArray<Entry>>
  count(): Promise<number>
  close(): Promise<void>
}

export const KIND = "Missive-Kind"
export const ID = "Missive-Id"
/** A batch carrier's members (their subject tokens, space-separated). */
export const IDS = "Missive-Ids"
export const AT = "Missive-At"
export const DUE = "Missive-Due"

export const streamNames = (prefix: string, shards: number): Array<string> =>
  Array.from({ length: shards }, (_, k) => `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_INBOX_${k}`)

const tokenOf = (id: string): string => (/^[A-Za-z0-9_-]+$/.test(id) ? id : `~${Buffer.from(id).toString("base64url")}`)

/** Carrier payload: 4-byte big-endian length of the events' JSON, the JSON, then the body bytes (if inline). */
export const encodeCarrier = (events: ReadonlyArray<Message.Event>, body: Buffer | undefined): Uint8Array => {
  const json = Buffer.from(`[${events.map(encode).join(",")}]`)
  const out = Buffer.allocUnsafe(4 + json.length + (body?.length ?? 0))
  out.writeUInt32BE(json.length, 0)
  json.copy(out, 4)
  body?.copy(out, 4 + json.length)
  return out
}

export const decodeCarrier = (id: string, data: Uint8Array, inline: boolean): Carrier => {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const n = b.readUInt32BE(0)
  const raw = JSON.parse(b.subarray(4, 4 + n).toString()) as Array<unknown>
  const events = raw.map((r) => decodeTrustedValue(r))
  // The body is copied out: the NATS buffer may be reused.
  return { id, events, body: inline ? Buffer.from(b.subarray(4 + n)) : undefined }
}

/**
 * Batch carrier payload: per member, 4-byte big-endian lengths and bytes of its id, its events' JSON and its body.
 * Members are always inline (large bodies commit alone).
 */
export const encodeBatch = (members: ReadonlyArray<{ id: string; events: ReadonlyArray<Message.Event>; body: Buffer }>): Uint8Array => {
  const parts: Array<Buffer> = []
  for (const m of members) {
    const id = Buffer.from(m.id)
    const json = Buffer.from(`[${m.events.map(encode).join(",")}]`)
    const head = Buffer.allocUnsafe(12)
    head.writeUInt32BE(id.length, 0)
    head.writeUInt32BE(json.length, 4)
    head.writeUInt32BE(m.body.length, 8)
    parts.push(head, id, json, m.body)
  }
  return Buffer.concat(parts)
}

export const decodeBatch = (data: Uint8Array): Array<Member> => {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const out: Array<Member> = []
  for (let at = 0; at < b.length;) {
    const idLen = b.readUInt32BE(at)
    const jsonLen = b.readUInt32BE(at + 4)
    const bodyLen = b.readUInt32BE(at + 8)
    at += 12
    const id = b.subarray(at, at + idLen).toString()
    at += idLen
    const raw = JSON.parse(b.subarray(at, at + jsonLen).toString()) as Array<unknown>
    at += jsonLen
    // Copied out: the NATS buffer may be reused.
    const body = Buffer.from(b.subarray(at, at + bodyLen))
    at += bodyLen
    out.push({ id, events: raw.map((r) => decodeTrustedValue(r)), body })
  }
  return out
}

/** Shard 0's stream metadata key holding the inbox's shard count, written by the node that created the inbox. */
export const SHARDS_KEY = "missive_shards"

/**
 * How many shards the cluster's inbox has (0 when none exists yet): the count fixed when the first node created
 * shard 0, read from its metadata. (An inbox made before the count was recorded there is counted by its streams.)
 */
export const existingShards = async (jsm: JetStreamManager, prefix: string): Promise<number> => {
  const first = streamNames(prefix, 1)[0]!
  let recorded: string | undefined
  try {
    recorded = (await jsm.streams.info(first)).config.metadata?.[SHARDS_KEY]
  } catch (e) {
    if (isGone(e)) return 0
    throw e
  }
  if (recorded !== undefined && Number(recorded) > 0) return Number(recorded)
  const head = first.replace(/0$/, "")
  let n = 0
  for await (const name of jsm.streams.names()) if (name.startsWith(head) && /^\d+$/.test(name.slice(head.length))) n++
  return n
}

export const open = async (o: InboxOptions): Promise<Inbox> => {
  const prefix = o.prefix ?? "missive"
  const ackWaitMs = o.ackWaitMs ?? 5_000
  const inlineMax = o.inlineMax ?? 512 * 1024
  const commitBudgetMs = o.commitBudgetMs ?? 8_000
  const jsm: JetStreamManager = await jetstreamManager(o.nc)
  const js: JetStreamClient = jetstream(o.nc, { timeout: o.timeoutMs ?? 3_000 })
  const commitsInFlight = Math.max(1, o.commitsInFlight ?? 2)
  const batchMax = Math.max(1, o.batchMax ?? 64)
  const batchBytes = o.batchBytes ?? 512 * 1024
  const consumer = "drive"
  const subjectsOf = (k: number) => [`${prefix}.in.${k}.*`, `${prefix}.wake.${k}.*`, `${prefix}.inb.${k}.*`]
  const streamConfig = (k: number, shards: number) => ({
    name: streamNames(prefix, k + 1)[k]!,
    subjects: subjectsOf(k),
    retention: RetentionPolicy.Workqueue,
    num_replicas: o.replicas ?? 1,
    allow_direct: true,
    duplicate_window: 120_000_000_000,
    max_msg_size: -1,
    ...(k === 0 ? { metadata: { [SHARDS_KEY]: String(shards) } } : {})
  })
  const ensureStream = async (k: number, shards: number): Promise<boolean> => {
    const cfg = streamConfig(k, shards)
    try {
      const info = await jsm.streams.info(cfg.name)
      // An inbox made before batch carriers existed takes their subject.
      if (!info.config.subjects.includes(cfg.subjects[2]!))
        await jsm.streams.update(cfg.name, { ...info.config, subjects: [...new Set([...info.config.subjects, ...cfg.subjects])] })
      return false
    } catch (e) {
      if (!isGone(e)) throw e
    }
    try {
      await jsm.streams.add(cfg)
      return true
    } catch (e) {
      if (isAlreadyExists(e)) return false
      throw e
    }
  }
  // An existing inbox keeps its shard count (a message's carrier must stay findable); a new one takes the option.
  // The count lives on shard 0, created first: a node that opens while another is still creating the shards reads
  // the count from there and makes the missing ones itself (the same configuration, so either creation stands), so
  // no node ever pulls from only some of the shards.
  let shards = await existingShards(jsm, prefix)
  let created = false
  if (shards === 0) {
    const want = Math.max(1, o.shards ?? 1)
    created = await ensureStream(0, want)
    shards = (await existingShards(jsm, prefix)) || want
  }
  const names = streamNames(prefix, shards)
  const carrierSubject = (k: number, id: string) => `${prefix}.in.${k}.${tokenOf(id)}`
  const wakeSubject = (k: number, id: string) => `${prefix}.wake.${k}.${tokenOf(id)}`

  for (let k = 0; k < shards; k++) {
    if ((k > 0 || !created) && (await ensureStream(k, shards))) created = true
    const name = names[k]!
    try {
      await jsm.consumers.info(name, consumer)
    } catch {
      await jsm.consumers
        .add(name, {
          durable_name: consumer,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: ackWaitMs * 1_000_000,
          max_deliver: -1,
          max_ack_pending: 1_000_000,
          max_waiting: 4096
        })
        .catch((e) => {
          if (!isAlreadyExists(e)) throw e
        })
    }
  }

  const batchSubject = (k: number, batch: string) => `${prefix}.inb.${k}.${batch}`

  // A shard whose leader does not answer in time is skipped for the next one, so losing a minority of servers (and
  // the leaders they held) does not stop intake. A shard with no leader (an election in progress) refuses at once:
  // go round the shards again after a short pause until `commitBudgetMs` has passed, so a minority loss costs a
  // client a little latency, not a 451.
  const publishFrom = async (
    first: number,
    subject: (k: number) => string,
    data: Uint8Array,
    headers: Record<string, string>,
    msgID: string
  ): Promise<{ shard: number; seq: number }> => {
    const deadline = Date.now() + commitBudgetMs
    let last: unknown
    for (let round = 0; ; round++) {
      for (let i = 0; i < shards; i++) {
        const k = (first + i) % shards
        const h = natsHeaders()
        for (const [key, v] of Object.entries(headers)) h.set(key, v)
        try {
          const ack = await js.publish(subject(k), data, { headers: h, msgID })
          return { shard: k, seq: ack.seq }
        } catch (e) {
          last = e
        }
        if (Date.now() > deadline) break
      }
      if (Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, Math.min(500, 100 * (round + 1))))
    }
    throw unavailable("accept commit failed on every shard", last)
  }

  /** One message's own carrier; the shard is the id's hash, so a retried commit of the id is deduplicated. */
  const single = (id: string, events: ReadonlyArray<Message.Event>, body: Buffer | undefined, dueAt?: number) => {
    const inline = body !== undefined && body.length <= inlineMax
    const headers: Record<string, string> = { [KIND]: inline ? "carrier" : "carrier-ref", [ID]: id, [AT]: String(events[0]?.at ?? 0) }
    if (dueAt !== undefined) headers[DUE] = String(dueAt)
    const data = encodeCarrier(events, inline ? body : undefined)
    return publishFrom(Hash.fnv1a32(id) % shards, (k) => carrierSubject(k, id), data, headers, `in:${tokenOf(id)}`)
  }

  interface Waiting {
    readonly id: string
    readonly events: ReadonlyArray<Message.Event>
    readonly body: Buffer
    readonly done: (r: { shard: number; seq: number }) => void
    readonly fail: (e: unknown) => void
  }
  const waiting: Array<Waiting> = []
  let inFlight = 0
  let batches = 0
  const batchTag = `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}`
  const pump = () => {
    while (inFlight < commitsInFlight && waiting.length > 0) {
      const group: Array<Waiting> = []
      let bytes = 0
      while (waiting.length > 0 && group.length < batchMax && (group.length === 0 || bytes + waiting[0]!.body.length <= batchBytes)) {
        const w = waiting.shift()!
        bytes += w.body.length
        group.push(w)
      }
      inFlight += 1
      const only = group.length === 1 ? group[0]! : undefined
      const batch = `b${batchTag}x${(batches++).toString(36)}`
      const sent = only
        ? single(only.id, only.events, only.body)
        : publishFrom(
            Hash.fnv1a32(batch) % shards,
            (k) => batchSubject(k, batch),
            encodeBatch(group),
            { [KIND]: "batch", [IDS]: group.map((w) => tokenOf(w.id)).join(" "), [AT]: String(group[0]!.events[0]?.at ?? 0) },
            `inb:${batch}`
          )
      void sent
        .then(
          (r) => group.forEach((w) => w.done(r)),
          (e) => group.forEach((w) => w.fail(e))
        )
        .finally(() => {
          inFlight -= 1
          pump()
        })
    }
  }

  const commit: Inbox["commit"] = (id, events, body, options) => {
    if (options?.keyed || body === undefined || body.length > batchBytes / 4) return single(id, events, body)
    return new Promise((done, fail) => {
      waiting.push({ id, events, body, done, fail })
      pump()
    })
  }

  const split: Inbox["split"] = async (member, inline, dueAt) => {
    await single(member.id, member.events, inline ? member.body : undefined, dueAt)
  }

  const wake: Inbox["wake"] = async (id, dueAt) => {
    const first = Hash.fnv1a32(id) % shards
    let last: unknown
    for (let i = 0; i < shards; i++) {
      const k = (first + i) % shards
      const h = natsHeaders()
      h.set(KIND, "wake")
      h.set(ID, id)
      h.set(DUE, String(dueAt))
      h.set(AT, String(dueAt))
      try {
        await js.publish(wakeSubject(k, id), new Uint8Array(0), { headers: h })
        return
      } catch (e) {
        last = e
      }
    }
    throw unavailable("wake failed on every shard", last)
  }

  /** A member of a batch carrier, by scanning the shards' batches (few: a batch lives only through its first drive). */
  const findInBatch = async (id: string): Promise<Found | null> => {
    const token = tokenOf(id)
    for (let k = 0; k < shards; k++) {
      for (let seq = 1; ;) {
        let m: StoredMsg | null
        try {
          m = await jsm.streams.getMessage(names[k]!, { seq, next_by_subj: batchSubject(k, "*") } as unknown as { seq: number })
        } catch (e) {
          if (isGone(e)) break
          throw unavailable("inbox read failed", e)
        }
        if (!m) break
        if ((m.header?.get(IDS) ?? "").split(" ").includes(token)) {
          const member = decodeBatch(m.data).find((x) => x.id === id)
          if (member) return { ...member, shard: k, seq: m.seq, inBatch: true }
        }
        seq = m.seq + 1
      }
    }
    return null
  }

  const find: Inbox["find"] = async (id) => {
    const found = await Promise.all(
      names.map(async (name, k) => {
        try {
          const m = await jsm.streams.getMessage(name, { last_by_subj: carrierSubject(k, id) })
          return m ? { k, m } : null
        } catch (e) {
          if (isGone(e)) return null
          throw unavailable("inbox read failed", e)
        }
      })
    )
    const hit = found.find((x): x is { k: number; m: StoredMsg } => x !== null)
    if (!hit) return findInBatch(id)
    const inline = hit.m.header?.get(KIND) === "carrier"
    return { ...decodeCarrier(id, hit.m.data, inline), shard: hit.k, seq: hit.m.seq, inBatch: false }
  }

  const remove: Inbox["remove"] = async (shard, seq) => {
    try {
      await jsm.streams.deleteMessage(names[shard]!, seq, false)
    } catch (e) {
      if (isGone(e)) return
      throw unavailable("inbox remove failed", e)
    }
  }

  const list: Inbox["list"] = async (limit) => {
    const out: Array<Entry> = []
    for (let k = 0; k < shards; k++) {
      const info = await jsm.streams.info(names[k]!).catch((e) => {
        throw unavailable("inbox read failed", e)
      })
      if (info.state.messages === 0) continue
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit;) {
        let m: StoredMsg | null
        try {
          m = await jsm.streams.getMessage(names[k]!, { seq, next_by_subj: `${prefix}.*.${k}.*` } as unknown as { seq: number })
        } catch (e) {
          if (isGone(e)) break
          throw unavailable("inbox read failed", e)
        }
        if (!m) break
        const kind = m.header?.get(KIND) === "wake" ? "wake" : "carrier"
        const at = Number(m.header?.get(AT) ?? 0)
        if (m.header?.get(KIND) === "batch")
          for (const x of decodeBatch(m.data)) out.push({ shard: k, seq: m.seq, kind, id: x.id, at, events: x.events })
        else out.push({ shard: k, seq: m.seq, kind, id: m.header?.get(ID) ?? "", at })
        seq = m.seq + 1
      }
    }
    return out.sort((a, b) => a.at - b.at).slice(0, limit)
  }

  const count: Inbox["count"] = async () => {
    let n = 0
    for (const name of names)
      n += (
        await jsm.streams.info(name).catch((e) => {
          throw unavailable("inbox read failed", e)
        })
      ).state.messages
    return n
  }

  return { shards, streams: names, consumer, ackWaitMs, created, commit, split, wake, find, remove, list, count, close: async () => {} }
}
