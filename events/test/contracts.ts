// Contract suites of the storage ports: every adapter (memory, SQLite, JetStream, EventStoreDB) runs the same tests.
// Each adapter's spec calls these with a factory; the factory returns a fresh, empty store and a disposer.
import type { Message } from "@missive/core"
import { afterEach, describe, expect, it } from "vitest"
import type { BodyStore } from "../src/BodyStore.js"
import { subscribeStream, type EventStore, type StoredEvent } from "../src/EventStore.js"
import type { Work } from "../src/Work.js"
import * as Snapshots from "../src/Snapshots.js"

export interface Fixture<T> {
  readonly store: T
  readonly dispose: () => Promise<void>
  /** Reopens the same data (a restart); adapters that cannot persist omit it. */
  readonly reopen?: () => Promise<T>
}

const meta = (at: number) => ({ v: 1, at, node: "n1", policy: "p" })
const received = (id: string, at = 1000): Message.Event => ({
  ...meta(at),
  type: "MessageReceived",
  id,
  sender: "a@x.test",
  recipients: ["b@y.test"],
  size: 10,
  digest: "sha256:00",
  client: { ip: "127.0.0.1", helo: "h", tls: false }
})
const held = (at: number): Message.Event => ({ ...meta(at), type: "MessageHeld", by: "op", reason: "test" })

export const eventStoreContract = (name: string, make: () => Promise<Fixture<EventStore>>) =>
  describe(`EventStore contract: ${name}`, () => {
    let fx: Fixture<EventStore> | undefined
    afterEach(async () => {
      await fx?.dispose()
      fx = undefined
    })
    const setup = async () => (fx = await make()).store

    it("appends to a new stream at expected version 0 and reads it back in order", async () => {
      const s = await setup()
      const r = await s.append("message-a", 0, [received("a"), held(1001)])
      expect(r.version).toBe(2)
      const back = await s.read("message-a")
      expect(back.map((e) => [e.version, e.event.type])).toEqual([
        [1, "MessageReceived"],
        [2, "MessageHeld"]
      ])
      expect(back[0]!.event).toEqual(received("a"))
    })

    it("rejects an append at the wrong expected version and writes nothing", async () => {
      const s = await setup()
      await s.append("message-a", 0, [received("a")])
      await expect(s.append("message-a", 0, [received("a")])).rejects.toMatchObject({ _tag: "WrongExpectedVersion" })
      await expect(s.append("message-a", 5, [held(2)])).rejects.toMatchObject({ _tag: "WrongExpectedVersion" })
      expect((await s.read("message-a")).length).toBe(1)
    })

    it("lets exactly one of two concurrent appends at the same version win", async () => {
      const s = await setup()
      await s.append("message-a", 0, [received("a")])
      const results = await Promise.allSettled([s.append("message-a", 1, [held(2)]), s.append("message-a", 1, [held(3)])])
      expect(results.filter((r) => r.status === "fulfilled").length).toBe(1)
      expect((await s.read("message-a")).length).toBe(2)
    })

    it("reads an unknown stream as empty", async () => {
      const s = await setup()
      expect(await s.read("message-none")).toEqual([])
    })

    it("keeps a global order across streams and pages through it", async () => {
      const s = await setup()
      for (let i = 0; i < 25; i++) await s.append(`message-${i}`, 0, [received(String(i), 1000 + i)])
      expect(await s.head()).toBe(25)
      const all: Array<StoredEvent> = []
      let after = 0
      for (;;) {
        const page = await s.readAll(after, 10)
        if (page.length === 0) break
        all.push(...page)
        after = page[page.length - 1]!.position
      }
      expect(all.map((e) => e.stream)).toEqual(Array.from({ length: 25 }, (_, i) => `message-${i}`))
      const positions = all.map((e) => e.position)
      expect([...positions].sort((a, b) => a - b)).toEqual(positions)
      expect(new Set(positions).size).toBe(25)
    })

    it("reads the log's index, when it has one, as readAll's position, stream, type and time", async () => {
      const s = await setup()
      for (let i = 0; i < 12; i++) await s.append(`message-${i}`, 0, [received(String(i), 1000 + i)])
      await s.append("message-3", 1, [held(2000)])
      if (!s.readIndex) return
      const all = await s.readAll(4, 100)
      expect(await s.readIndex(4, 100)).toEqual(
        all.map((e) => ({ position: e.position, stream: e.stream, type: e.event.type, at: e.event.at }))
      )
      expect((await s.readIndex(0, 3)).map((e) => e.position)).toEqual([1, 2, 3])
      // With types: only those, still in log order; the limit counts positions looked at.
      expect((await s.readIndex(0, 13, ["MessageHeld"])).map((e) => [e.position, e.stream])).toEqual([[13, "message-3"]])
      expect((await s.readIndex(0, 12, ["MessageHeld"])).length).toBe(0)
      expect((await s.readIndex(10, 100, ["MessageReceived"])).map((e) => e.position)).toEqual([11, 12])
    })

    it("reads the log decoding only some types, when it can, as readAll filtered, and says how far it looked", async () => {
      const s = await setup()
      for (let i = 0; i < 12; i++) await s.append(`message-${i}`, 0, [received(String(i), 1000 + i)])
      await s.append("message-3", 1, [held(2000)])
      if (!s.readAllOf) return
      const all = await s.readAll(0, 100)
      expect(await s.readAllOf(0, 100, ["MessageHeld", "MessageReceived"])).toEqual({ events: all, through: 13 })
      expect(await s.readAllOf(4, 100, ["MessageHeld"])).toEqual({ events: all.slice(12), through: 13 })
      // The limit counts positions looked at: none of the type among them still moves `through`.
      expect(await s.readAllOf(0, 12, ["MessageHeld"])).toEqual({ events: [], through: 12 })
      expect(await s.readAllOf(13, 10, ["MessageReceived"])).toEqual({ events: [], through: 13 })
    })

    it("subscribes from a position: catch-up then live, in order", async () => {
      const s = await setup()
      await s.append("message-a", 0, [received("a")])
      await s.append("message-b", 0, [received("b")])
      const seen: Array<string> = []
      const stop = s.subscribe(1, (e) => seen.push(e.stream))
      await s.append("message-c", 0, [received("c")])
      await new Promise((r) => setTimeout(r, 200))
      stop()
      await s.append("message-d", 0, [received("d")])
      await new Promise((r) => setTimeout(r, 100))
      expect(seen).toEqual(["message-b", "message-c"])
    })

    it("several subscribers from different positions each get their own events, in order, once", async () => {
      const s = await setup()
      await s.append("message-a", 0, [received("a")])
      const first: Array<string> = []
      const stopFirst = s.subscribe(0, (e) => first.push(e.stream))
      await s.append("message-b", 0, [received("b")])
      await s.append("message-c", 0, [received("c"), held(2)])
      await new Promise((r) => setTimeout(r, 200))
      // One behind what the first has seen, one at the head: each gets exactly what follows its position.
      const behind: Array<string> = []
      const stopBehind = s.subscribe(1, (e) => behind.push(`${e.stream}@${e.version}`))
      const atHead: Array<string> = []
      const stopAtHead = s.subscribe(await s.head(), (e) => atHead.push(e.stream))
      await s.append("message-d", 0, [received("d")])
      await new Promise((r) => setTimeout(r, 300))
      stopFirst()
      await s.append("message-e", 0, [received("e")])
      await new Promise((r) => setTimeout(r, 300))
      stopBehind()
      stopAtHead()
      expect(first).toEqual(["message-a", "message-b", "message-c", "message-c", "message-d"])
      expect(behind).toEqual(["message-b@1", "message-c@1", "message-c@2", "message-d@1", "message-e@1"])
      expect(atHead).toEqual(["message-d", "message-e"])
    })

    it("subscribes to one stream from a position: its events only, catch-up then live", async () => {
      const s = await setup()
      await s.append("message-a", 0, [received("a")])
      await s.append("message-b", 0, [received("b")])
      await s.append("message-a", 1, [held(2)])
      const seen: Array<string> = []
      const stop = subscribeStream(s, "message-a", 1, (e) => seen.push(`${e.stream}@${e.version}`))
      await s.append("message-c", 0, [received("c")])
      await s.append("message-a", 2, [held(3)])
      await new Promise((r) => setTimeout(r, 300))
      stop()
      await s.append("message-a", 3, [held(4)])
      await new Promise((r) => setTimeout(r, 100))
      expect(seen).toEqual(["message-a@2", "message-a@3"])
    })

    it("survives a reopen with every acknowledged event", async () => {
      const s = await setup()
      if (!fx!.reopen) return
      await s.append("message-a", 0, [received("a"), held(2)])
      const again = await fx!.reopen()
      expect((await again.read("message-a")).map((e) => e.event.type)).toEqual(["MessageReceived", "MessageHeld"])
      await again.append("message-a", 2, [held(3)])
    })
  })

export const bodyStoreContract = (name: string, make: () => Promise<Fixture<BodyStore>>) =>
  describe(`BodyStore contract: ${name}`, () => {
    let fx: Fixture<BodyStore> | undefined
    afterEach(async () => {
      await fx?.dispose()
      fx = undefined
    })

    it("stores bytes under their digest, byte-exact, idempotently", async () => {
      fx = await make()
      const bytes = Buffer.from("Subject: x\r\n\r\n\u00e9\x00\xff body\r\n", "latin1")
      const d1 = await fx.store.put(bytes)
      const d2 = await fx.store.put(bytes)
      expect(d1).toBe(d2)
      expect(d1).toMatch(/^sha256:[0-9a-f]{64}$/)
      expect(Buffer.compare(await fx.store.get(d1), bytes)).toBe(0)
    })

    it("handles bodies larger than 1 MiB", async () => {
      fx = await make()
      const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7)
      big[12345] = 1
      const d = await fx.store.put(big)
      expect(Buffer.compare(await fx.store.get(d), big)).toBe(0)
    })

    it("fails with BodyNotFound for an unknown or deleted digest", async () => {
      fx = await make()
      await expect(fx.store.get("sha256:" + "0".repeat(64))).rejects.toMatchObject({ _tag: "BodyNotFound" })
      const d = await fx.store.put(Buffer.from("x"))
      await fx.store.delete(d)
      await expect(fx.store.get(d)).rejects.toMatchObject({ _tag: "BodyNotFound" })
    })
  })

export const workContract = (name: string, make: () => Promise<Fixture<Work>>) =>
  describe(`Work contract: ${name}`, () => {
    let fx: Fixture<Work> | undefined
    afterEach(async () => {
      await fx?.dispose()
      fx = undefined
    })

    it("claims only due items, earliest first, and leases them", async () => {
      fx = await make()
      const w = fx.store
      await w.schedule("a", 300)
      await w.schedule("b", 100)
      await w.schedule("c", 5000)
      expect((await w.claim(1000, 10, "n1", 2000)).map((i) => i.id)).toEqual(["b", "a"])
      expect(await w.claim(1000, 10, "n2", 2000)).toEqual([])
      expect((await w.claim(2000, 10, "n2", 3000)).map((i) => i.id)).toEqual(["b", "a"])
      expect(await w.count()).toBe(3)
    })

    it("reschedules, completes and releases", async () => {
      fx = await make()
      const w = fx.store
      await w.schedule("a", 100, { owner: "n1", until: 10_000 })
      expect(await w.claim(500, 10, "n2", 600)).toEqual([])
      await w.releaseAll("n1")
      expect((await w.claim(500, 10, "n2", 600)).map((i) => i.id)).toEqual(["a"])
      await w.schedule("a", 900)
      expect(await w.nextDue()).toBe(900)
      await w.complete("a")
      expect(await w.count()).toBe(0)
      expect(await w.nextDue()).toBeUndefined()
    })

    it("respects the claim limit", async () => {
      fx = await make()
      for (let i = 0; i < 20; i++) await fx.store.schedule(`m${i}`, i)
      expect((await fx.store.claim(100, 7, "n1", 200)).length).toBe(7)
    })
  })

/**
 * What a snapshot store holds after following `log` (segments of `every` positions): a digest and an open-set snapshot
 * at each complete segment's end, each the same as made from the log itself. Gives each end with its snapshot and the
 * open set computed from the log, for a caller's further checks.
 */
export const expectSegmentsOf = async (
  log: ReadonlyArray<StoredEvent>,
  snaps: Snapshots.SnapshotStore,
  every: number,
  head = log.length
): Promise<Array<{ end: number; snapshot: Snapshots.Snapshot; open: Map<string, number> }>> => {
  const ends = [...(await snaps.listDigests())].sort((x, y) => x - y)
  expect(ends).toEqual(Array.from({ length: Math.floor((head - 1) / every) }, (_, i) => every * (i + 1)))
  const out: Array<{ end: number; snapshot: Snapshots.Snapshot; open: Map<string, number> }> = []
  for (const end of ends) {
    const segment = log.filter((e) => e.position > end - every && e.position <= end)
    expect(Snapshots.decodeDigest((await snaps.loadDigest(end))!)).toEqual(Snapshots.decodeDigest(Snapshots.encodeDigest(segment)))
    const open = new Map<string, number>()
    for (const e of log.filter((x) => x.position <= end))
      if (e.event.type === "MessageReceived") open.set(e.stream, e.position)
      else if (e.event.type === "MessageCompleted") open.delete(e.stream)
    const snapshot = (await snaps.load(end))!
    expect(new Map(snapshot.open)).toEqual(open)
    out.push({ end, snapshot, open })
  }
  return out
}
