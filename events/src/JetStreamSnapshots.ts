// The replay snapshots port on JetStream: stream `<PREFIX>_REPLAY`, one subject per snapshot,
// `<prefix>.replay.open.<log>.<position>.<maxAt>`, its open set in chunks (a NATS message is at most 1 MB). `<log>` is
// the events stream's creation time, so a log deleted and made again under the same prefix never meets the old
// snapshots. Written by replay commands (derived data, never the log itself); the event log is only looked at.
import type { NatsConnection } from "@nats-io/transport-node"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { streamName as eventsStreamName } from "./JetStreamEventStore.js"
import { isAlreadyExists, isNoMessage } from "./internal/NatsFault.js"
import type { Snapshot, SnapshotStore } from "./Snapshots.js"

export interface JetStreamSnapshotsOptions {
  readonly nc: NatsConnection
  readonly prefix?: string
  readonly replicas?: number
}

/** Open streams per message: about 50 bytes each (name and position), so a chunk stays well under NATS's 1 MB. */
const CHUNK = 16_000

export const streamName = (prefix: string): string => `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_REPLAY`

export const open = async (o: JetStreamSnapshotsOptions): Promise<SnapshotStore> => {
  const prefix = o.prefix ?? "missive"
  const jsm = await jetstreamManager(o.nc)
  const js = jetstream(o.nc)
  const name = streamName(prefix)
  const log = (await jsm.streams.info(eventsStreamName(prefix))).created.replace(/\D/g, "")
  await jsm.streams.info(name).catch(() =>
    jsm.streams.add({ name, subjects: [`${prefix}.replay.>`], num_replicas: o.replicas ?? 1, allow_direct: true }).catch((e: unknown) => {
      if (!isAlreadyExists(e)) throw e
    })
  )
  const base = `${prefix}.replay.open.${log}.`
  const subjectOf = (s: { position: number; maxAt: number }) => `${base}${s.position}.${Math.max(0, s.maxAt)}`

  const list: SnapshotStore["list"] = async () => {
    const info = await jsm.streams.info(name, { subjects_filter: `${base}>` })
    return Object.keys(info.state.subjects ?? {}).map((subject) => {
      const [position, maxAt] = subject.slice(base.length).split(".").map(Number)
      return { position: position!, maxAt: maxAt! }
    })
  }

  const load: SnapshotStore["load"] = async (position) => {
    const held = (await list()).find((s) => s.position === position)
    if (!held) return undefined
    const subject = subjectOf(held)
    const chunks = new Map<number, Snapshot["open"]>()
    let count = Infinity
    for (let from = 1; chunks.size < count;) {
      let m
      try {
        m = await jsm.streams.getMessage(name, { seq: from, next_by_subj: subject } as unknown as { seq: number })
      } catch (e) {
        if (isNoMessage(e)) break
        throw e
      }
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

  return {
    list,
    load,
    save,
    clear: async () => void (await jsm.streams.purge(name)),
    close: async () => {}
  }
}
