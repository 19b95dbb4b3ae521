// The JetStream adapters against the same contract suites as memory and SQLite, on a real nats-server (temp store,
// `port: -1`); each fixture gets its own stream and buckets, so the tests share one server.
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import { randomBytes } from "node:crypto"
import type { Message } from "@missive/core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNatsServer, type NatsServer } from "../../test/src/Nats.js"
import * as JetStreamBodyStore from "../src/JetStreamBodyStore.js"
import type * as EventStore from "../src/EventStore.js"
import * as JetStreamEventStore from "../src/JetStreamEventStore.js"
import * as JetStreamSnapshots from "../src/JetStreamSnapshots.js"
import * as Snapshots from "../src/Snapshots.js"
import { bodyStoreContract, eventStoreContract, expectSegmentsOf } from "./contracts.js"

let server: NatsServer
let nc: NatsConnection
let n = 0
beforeAll(async () => {
  server = await startNatsServer()
  nc = await connect({ servers: server.url })
})
afterAll(async () => {
  await nc?.close()
  await server?.dispose()
})

const prefix = () => `t${++n}`
eventStoreContract("jetstream", async () => {
  const p = prefix()
  let s = await JetStreamEventStore.open({ nc, prefix: p })
  return {
    store: s,
    reopen: async () => {
      await s.close()
      s = await JetStreamEventStore.open({ nc, prefix: p })
      return s
    },
    dispose: () => s.close()
  }
})
bodyStoreContract("jetstream object store", async () => {
  const s = await JetStreamBodyStore.open({ nc, prefix: prefix() })
  return { store: s, dispose: () => s.close() }
})

// A reader's store (replay): streams read by direct gets; the same contract (one server, so never behind).
eventStoreContract("jetstream, direct reads", async () => {
  const p = prefix()
  let s = await JetStreamEventStore.open({ nc, prefix: p, direct: true })
  return {
    store: s,
    reopen: async () => {
      await s.close()
      s = await JetStreamEventStore.open({ nc, prefix: p, direct: true })
      return s
    },
    dispose: () => s.close()
  }
})

describe("replay's reads of a JetStream log", () => {
  const event = (id: string, i: number): Message.Event =>
    ({ v: 1, type: "MessageHeld", messageId: id, at: 1000 + i, node: "n", policy: "p", by: "t" }) as unknown as Message.Event

  it("readRange gives every event of a range once, in log order, as readAll does", async () => {
    const s = await JetStreamEventStore.open({ nc, prefix: prefix() })
    // More appends than one pull request asks for (4096), one to three events each.
    const versions = new Map<string, number>()
    for (let i = 0; i < 15_000; i += 3) {
      const stream = `message-m${i % 7}`
      const evs = [event(`m${i % 7}`, i), event(`m${i % 7}`, i + 1), event(`m${i % 7}`, i + 2)].slice(0, 1 + ((i / 3) % 3))
      await s.append(stream, versions.get(stream) ?? 0, evs)
      versions.set(stream, (versions.get(stream) ?? 0) + evs.length)
    }
    const head = await s.head()
    const all: Array<EventStore.StoredEvent> = []
    for (let p = 0; p < head;) {
      const b = await s.readAll(p, 500)
      all.push(...b)
      p = b[b.length - 1]!.position
    }
    const ranged: Array<EventStore.StoredEvent> = []
    for await (const b of s.readRange!(0, head)) ranged.push(...b)
    expect(ranged).toEqual(all)
    const part: Array<EventStore.StoredEvent> = []
    for await (const b of s.readRange!(1000, 3000)) part.push(...b)
    expect(part).toEqual(all.filter((e) => e.position > 1000 && e.position <= 3000))
    // One stream from a position on (replay's read of an open message from its first append): what read gives after it.
    for (const after of [0, 2000, head])
      expect(await s.readFrom!("message-m3", after)).toEqual((await s.read("message-m3")).filter((e) => e.position > after))
    // A single append by direct get: the same as through a consumer.
    expect(await s.readAll(2999, 1)).toEqual(all.filter((e) => e.position === 3000))
    await s.close()
  })

  it("keeps open-set snapshots in chunks, per log, and forgets them on clear", async () => {
    const p = prefix()
    await (await JetStreamEventStore.open({ nc, prefix: p })).close()
    const snaps = await JetStreamSnapshots.open({ nc, prefix: p })
    const open = Array.from({ length: 40_000 }, (_, i) => [`message-${String(i).padStart(26, "0")}`, i + 1] as const)
    await snaps.save({ position: 5000, maxAt: 123, open })
    await snaps.save({ position: 5000, maxAt: 123, open }) // a second replay run: kept once
    await snaps.save({ position: 10_000, maxAt: 456, open: [] })
    expect([...(await snaps.list())].sort((a, b) => a.position - b.position)).toEqual([
      { position: 5000, maxAt: 123 },
      { position: 10_000, maxAt: 456 }
    ])
    expect(await snaps.load(5000)).toEqual({ position: 5000, maxAt: 123, open })
    expect(await snaps.load(10_000)).toEqual({ position: 10_000, maxAt: 456, open: [] })
    expect(await snaps.load(15_000)).toBeUndefined()
    await snaps.clear()
    expect(await snaps.list()).toEqual([])
  })

  it("keeps segment digests deflated, in chunks when large, per log, once, within a size limit", async () => {
    const p = prefix()
    await (await JetStreamEventStore.open({ nc, prefix: p })).close()
    const snaps = await JetStreamSnapshots.open({ nc, prefix: p })
    const small = Buffer.from([1, 2, 3, 4, 5])
    // Incompressible: three chunks of 512 KiB.
    const large = randomBytes(1_100_000)
    await snaps.saveDigest(5000, small)
    await snaps.saveDigest(10_000, large)
    await snaps.saveDigest(5000, large) // the same process again: the first is kept, nothing published
    const other = await JetStreamSnapshots.open({ nc, prefix: p })
    await other.saveDigest(10_000, large) // another process, the same digest: deduplicated by JetStream
    expect([...(await snaps.listDigests())].sort((a, b) => a - b)).toEqual([5000, 10_000])
    expect(await snaps.loadDigest(5000)).toEqual(small)
    expect(await snaps.loadDigest(10_000)).toEqual(large)
    expect(await snaps.loadDigest(15_000)).toBeUndefined()
    const jsm = await jetstreamManager(nc)
    const info = await jsm.streams.info(JetStreamSnapshots.streamName(p))
    expect(info.config.max_bytes).toBe(JetStreamSnapshots.MAX_BYTES)
    expect(info.state.messages).toBe(1 + 3)
    // Another process saving other contents (a digest format it writes differently): the loads never mix two saves.
    const large2 = randomBytes(1_100_000)
    await other.saveDigest(5000, large2)
    expect(await snaps.loadDigest(5000)).toEqual(large2)
    // A stream made with another limit is given this one.
    await (await JetStreamSnapshots.open({ nc, prefix: p, maxBytes: 8 * 1024 * 1024 })).close()
    expect((await jsm.streams.info(JetStreamSnapshots.streamName(p))).config.max_bytes).toBe(8 * 1024 * 1024)
    await snaps.clear()
    expect(await snaps.listDigests()).toEqual([])
    expect(await snaps.loadDigest(5000)).toBeUndefined()
    // Saved again right after a clear (within JetStream's duplicate window): kept, not dropped as a duplicate.
    await snaps.saveDigest(5000, small)
    await snaps.save({ position: 5000, maxAt: 1, open: [] })
    expect(await snaps.loadDigest(5000)).toEqual(small)
    expect(await snaps.load(5000)).toEqual({ position: 5000, maxAt: 1, open: [] })
  })

  it("has a follower save each segment's digest and open set as the log grows, once with two followers", async () => {
    const p = prefix()
    const w = await JetStreamEventStore.open({ nc, prefix: p })
    const m = { v: 1, node: "n", policy: "p" } as const
    const reply = { code: 250, text: "ok" }
    const append = async (k: number) => {
      const r = `r${k}@d${k % 3}.test`
      await w.append(`message-${k}`, 0, [
        {
          ...m,
          at: 1000 * k,
          type: "MessageReceived",
          id: `${k}`,
          sender: "",
          recipients: [r],
          size: 1,
          digest: "d",
          client: { ip: "127.0.0.1", helo: "h", tls: false }
        }
      ])
      if (k % 5 !== 0)
        await w.append(`message-${k}`, 1, [
          { ...m, at: 1000 * k + 1, type: "RecipientDelivered", rcpt: r, host: "h", reply },
          { ...m, at: 1000 * k + 2, type: "MessageCompleted", delivered: 1, bounced: 0, expired: 0, deleted: false }
        ])
    }
    for (let k = 0; k < 30; k++) await append(k)
    const errors: Array<unknown> = []
    const follower = async () =>
      JetStreamSnapshots.follow({
        nc,
        prefix: p,
        every: 10,
        events: await JetStreamEventStore.open({ nc, prefix: p }),
        onError: (e) => errors.push(e)
      })
    const a = await follower()
    const b = await follower()
    for (let k = 30; k < 60; k++) await append(k)
    const head = await w.head()
    const snaps = await JetStreamSnapshots.open({ nc, prefix: p, every: 10 })
    // Each segment is saved when the first event after it comes: every one before the last append's.
    for (let i = 0; i < 100 && (await snaps.listDigests()).length < Math.floor((head - 1) / 10); i++)
      await new Promise((r) => setTimeout(r, 50))
    await a.close()
    await b.close()
    expect(errors).toEqual([])
    await expectSegmentsOf(await w.readAll(0, 1e6), snaps, 10, head)
    // Two followers, one copy of each digest (a digest that fits one message is one message).
    const jsm = await jetstreamManager(nc)
    const info = await jsm.streams.info(JetStreamSnapshots.streamName(p), { subjects_filter: `${p}.replay.digest.>` })
    expect(Object.values(info.state.subjects ?? {}).every((n) => n === 1)).toBe(true)
  })
})
