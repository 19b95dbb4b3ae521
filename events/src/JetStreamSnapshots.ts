// The replay snapshots port on JetStream: stream `<PREFIX>_REPLAY`. An open-set snapshot is the subject
// `<prefix>.replay.open.<log>.<position>.<maxAt>`, its open set in JSON chunks (a NATS message is at most 1 MB); a
// segment's digest is `<prefix>.replay.digest.<log>.<position>`, deflated, in chunks of 512 KiB (header
// `Missive-Chunk: i/n/hash`: a load takes the chunks of the last save whole). `<log>` is the events stream's creation time, so a log deleted and made again under the same
// prefix never meets the old data. Retention: the stream keeps at most `maxBytes` (default 512 MiB) and JetStream
// discards the oldest writes beyond it, so it never grows without bound; what it drops is read from the log again
// when needed. Written by replay commands (derived data, never the log itself); the event log is only looked at.
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node"
import { DiscardPolicy, jetstream, jetstreamManager, type StoredMsg } from "@nats-io/jetstream"
import { createHash } from "node:crypto"
import { deflateRawSync, inflateRawSync } from "node:zlib"
import { streamName as eventsStreamName } from "./JetStreamEventStore.js"
import { isAlreadyExists, isGone, isNoMessage } from "./internal/NatsFault.js"
import type { EventStore } from "./EventStore.js"
import { follow as followLog, type Snapshot, type SnapshotStore } from "./Snapshots.js"

export interface JetStreamSnapshotsOptions {
  readonly nc: NatsConnection
  readonly prefix?: string
  readonly replicas?: number
  /** The stream's size limit: beyond it the oldest snapshots and digests are discarded (default 512 MiB). */
  readonly maxBytes?: number
  /** Log positions per segment (default `Snapshots.EVERY`); tests take them closer. */
  readonly every?: number
}

/** Open streams per message: about 50 bytes each (name and position), so a chunk stays well under NATS's 1 MB. */
const CHUNK = 16_000
/** A digest's deflated bytes per message. */
const DIGEST_CHUNK = 512 * 1024
const CHUNK_HEADER = "Missive-Chunk"
export const MAX_BYTES = 512 * 1024 * 1024

export const streamName = (prefix: string): string => `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_REPLAY`

export const open = async (o: JetStreamSnapshotsOptions): Promise<SnapshotStore> => {
  const prefix = o.prefix ?? "missive"
  const jsm = await jetstreamManager(o.nc)
  const js = jetstream(o.nc)
  const name = streamName(prefix)
  const maxBytes = o.maxBytes ?? MAX_BYTES
  const log = (await jsm.streams.info(eventsStreamName(prefix))).created.replace(/\D/g, "")
  const create = () =>
    jsm.streams
      .add({
        name,
        subjects: [`${prefix}.replay.>`],
        num_replicas: o.replicas ?? 1,
        allow_direct: true,
        max_bytes: maxBytes,
        discard: DiscardPolicy.Old
      })
      .catch((e: unknown) => {
        if (!isAlreadyExists(e)) throw e
      })
  const info = await jsm.streams.info(name).catch(() => undefined)
  if (!info) await create()
  else if (info.config.max_bytes !== maxBytes)
    // A stream made before the limit (or with another): given it, JetStream discards the oldest beyond it.
    await jsm.streams.update(name, { ...info.config, max_bytes: maxBytes, discard: DiscardPolicy.Old })
  const base = `${prefix}.replay.open.${log}.`
  const subjectOf = (s: { position: number; maxAt: number }) => `${base}${s.position}.${Math.max(0, s.maxAt)}`
  const digestBase = `${prefix}.replay.digest.${log}.`

  const subjects = async (filter: string): Promise<Array<string>> =>
    Object.keys((await jsm.streams.info(name, { subjects_filter: `${filter}>` })).state.subjects ?? {})

  const list: SnapshotStore["list"] = async () =>
    (await subjects(base)).map((subject) => {
      const [position, maxAt] = subject.slice(base.length).split(".").map(Number)
      return { position: position!, maxAt: maxAt! }
    })

  /** The messages of one subject in stream order, from its first (null when it has none). */
  const next = async (subject: string, from: number): Promise<StoredMsg | null> => {
    try {
      return await jsm.direct.getMessage(name, { seq: from, next_by_subj: subject })
    } catch (e) {
      if (isNoMessage(e)) return null
      throw e
    }
  }

  const load: SnapshotStore["load"] = async (position) => {
    const held = (await list()).find((s) => s.position === position)
    if (!held) return undefined
    const subject = subjectOf(held)
    const chunks = new Map<number, Snapshot["open"]>()
    let count = Infinity
    for (let from = 1; chunks.size < count;) {
      const m = await next(subject, from)
      if (!m) break
      const c = m.json<{ chunk: number; chunks: number; open: Snapshot["open"] }>()
      count = c.chunks
      if (!chunks.has(c.chunk)) chunks.set(c.chunk, c.open)
      from = m.seq + 1
    }
    if (chunks.size < count) return undefined
    return { position, maxAt: held.maxAt, open: [...chunks.values()].flat() }
  }

  const save: SnapshotStore["save"] = async (s: Snapshot) => {
    if ((await list()).some((h) => h.position === s.position)) return
    const subject = subjectOf(s)
    const chunks = Math.max(1, Math.ceil(s.open.length / CHUNK))
    for (let i = 0; i < chunks; i++)
      await js.publish(subject, JSON.stringify({ chunk: i, chunks, open: s.open.slice(i * CHUNK, (i + 1) * CHUNK) }), {
        msgID: `${subject}:${i}`
      })
  }

  /** Digests this process saved or saw listed: a save of one of them publishes nothing. */
  const digestsHeld = new Set<number>()
  const listDigests: SnapshotStore["listDigests"] = async () => {
    const held = (await subjects(digestBase)).map((subject) => Number(subject.slice(digestBase.length)))
    for (const p of held) digestsHeld.add(p)
    return held
  }

  /** A chunk's index, the number of chunks and the hash of the whole (two saves of a segment never mix). */
  const chunkOf = (m: StoredMsg): [number, number, string] => {
    const [i, n, hash] = (m.header?.get(CHUNK_HEADER) ?? "0/1/").split("/")
    return [Number(i), Number(n), hash ?? ""]
  }

  const loadDigest: SnapshotStore["loadDigest"] = async (position) => {
    const subject = `${digestBase}${position}`
    let last: StoredMsg | null
    try {
      last = await jsm.direct.getMessage(name, { last_by_subj: subject })
    } catch (e) {
      if (isNoMessage(e)) return undefined
      throw e
    }
    if (!last) return undefined
    const [, n, hash] = chunkOf(last)
    let parts: Array<Uint8Array | undefined> = [last.data]
    if (n > 1) {
      // Several chunks (a segment of very large messages): those of the last save, from the subject's first message on.
      parts = new Array(n)
      for (let from = 1, found = 0; found < n;) {
        const m = await next(subject, from)
        if (!m) return undefined
        const [i, , h] = chunkOf(m)
        if (h === hash && parts[i] === undefined) {
          found++
          parts[i] = m.data
        }
        from = m.seq + 1
      }
    }
    return inflateRawSync(Buffer.concat(parts as Array<Uint8Array>))
  }

  const saveDigest: SnapshotStore["saveDigest"] = async (position, digest) => {
    if (digestsHeld.has(position)) return
    const subject = `${digestBase}${position}`
    const bytes = deflateRawSync(digest, { level: 1 })
    const hash = createHash("sha256").update(bytes).digest("base64url").slice(0, 16)
    const n = Math.max(1, Math.ceil(bytes.length / DIGEST_CHUNK))
    for (let i = 0; i < n; i++) {
      const h = natsHeaders()
      h.set(CHUNK_HEADER, `${i}/${n}/${hash}`)
      await js.publish(subject, bytes.subarray(i * DIGEST_CHUNK, (i + 1) * DIGEST_CHUNK), { headers: h, msgID: `${subject}:${hash}:${i}` })
    }
    digestsHeld.add(position)
  }

  return {
    ...(o.every === undefined ? {} : { every: o.every }),
    list,
    load,
    save,
    listDigests,
    loadDigest,
    saveDigest,
    clear: async () => {
      // Deleted and made again, not purged: a purged stream keeps its duplicate window, so what is saved again
      // within it (the same message ids) would be dropped as a duplicate.
      digestsHeld.clear()
      await jsm.streams.delete(name).catch((e: unknown) => {
        if (!isGone(e)) throw e
      })
      await create()
    },
    close: async () => {}
  }
}

/**
 * For a cluster node: keeps the digests and open-set snapshots current as the log grows (`Snapshots.follow` on the
 * node's subscription to the log), so that `missive replay report` on the cluster folds digests rather than the log.
 * Several nodes running it save each segment once (the same message ids within JetStream's duplicate window).
 */
export const follow = async (
  o: JetStreamSnapshotsOptions & { readonly events: EventStore; readonly onError?: (e: unknown) => void }
): Promise<{ readonly settled: () => Promise<void>; readonly close: () => Promise<void> }> => {
  const snapshots = await open(o)
  const f = await followLog(o.events, snapshots, o.onError ? { onError: o.onError } : {})
  return {
    settled: f.settled,
    close: async () => {
      f.stop()
      await f.settled()
      await snapshots.close()
    }
  }
}
