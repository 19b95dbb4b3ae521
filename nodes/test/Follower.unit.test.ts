// The log follower behind the events publisher and the suppression reactor: every event of its types handed once, in
// log order, whether read from the store (catch-up, after a failure, past an overflow) or taken from its subscription
// once caught up (then the store is not read at all); with `types`, only an append of one of them wakes it.
import type { Message } from "@missive/core"
import { EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as Follower from "../src/publish/Follower.js"

const held = (i: number): Message.Event =>
  ({ v: 1, type: "MessageHeld", at: i, node: "n", policy: "p", by: "t", reason: `r${i}` }) as unknown as Message.Event
const released = (i: number): Message.Event => ({ v: 1, type: "MessageReleased", at: i, node: "n", policy: "p", by: "t" }) as Message.Event

const until = async (what: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms
  while (!what()) {
    if (Date.now() > deadline) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("Follower", () => {
  it("hands every event of its types once, in order: caught up from the store, then live from its subscription", async () => {
    const memory = EventStore.makeMemory()
    let reads = 0
    const store: EventStore.EventStore = {
      ...memory,
      readAll: (a, l) => (reads++, memory.readAll(a, l)),
      readAllOf: (a, l, t) => (reads++, memory.readAllOf!(a, l, t))
    }
    const versions = new Map<string, number>()
    let n = 0
    const append = async (count: number) => {
      for (let i = 0; i < count; i++, n++) {
        const s = `message-m${n % 5}`
        const evs = n % 3 === 0 ? [held(n), released(n)] : [held(n)]
        await store.append(s, versions.get(s) ?? 0, evs)
        versions.set(s, (versions.get(s) ?? 0) + evs.length)
      }
    }
    await append(300) // before the follower starts: read from the store
    const handled: Array<number> = []
    let fail = 0
    let saved = 0
    const f = await Follower.start({
      name: "t",
      events: store,
      checkpoint: { load: async () => 0, save: async (p) => void (saved = p) },
      log: () => {},
      batchSize: 16,
      types: ["MessageReleased"],
      handle: async (batch) => {
        // One failure: the batch is handed again (from the store), never skipped.
        if (fail === 1) {
          fail = 2
          throw new Error("refused once")
        }
        for (const e of batch) handled.push(e.position)
      }
    })
    const wanted = async () => (await memory.readAll(0, 1e9)).filter((e) => e.event.type === "MessageReleased").map((e) => e.position)
    const caught = await memory.head()
    await until(() => f.position() === caught)
    expect(handled).toEqual(await wanted())
    // Live, one append at a time: taken from the subscription, the store not read.
    const before = reads
    for (let i = 0; i < 60; i++) {
      await append(1)
      await new Promise((r) => setTimeout(r, 1))
    }
    const head = await memory.head()
    await until(() => f.position() === head)
    expect(handled).toEqual(await wanted())
    expect(reads - before).toBe(0)
    // A burst far beyond what the follower holds (8 batches), and a failed batch: back to the store, none lost.
    fail = 1
    await append(1000)
    const end = await memory.head()
    await until(() => f.position() === end)
    expect(handled).toEqual(await wanted())
    expect(fail).toBe(2)
    await f.stop()
    expect(saved).toBe(end)
  })
})

const event = (type: Message.EventType, at: number) => ({ type, v: 1, at, node: "n", policy: "p" }) as unknown as Message.Event

/** Lets the follower's loop run until it waits again (promise turns and immediates only, no clock). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

/** A memory store that counts the follower's reads of the log (`readAllOf`). */
const countingStore = () => {
  const store = EventStore.makeMemory()
  const reads = { n: 0 }
  const counted: EventStore.EventStore = {
    ...store,
    readAllOf: (after, limit, types) => {
      reads.n += 1
      return store.readAllOf!(after, limit, types)
    }
  }
  return { store, counted, reads }
}

describe("Follower with types", () => {
  it("is woken by an append of its types only, and hands those only", async () => {
    const { store, counted, reads } = countingStore()
    const handled: Array<EventStore.StoredEvent> = []
    const follower = await Follower.start({
      name: "test",
      events: counted,
      checkpoint: { load: async () => 0, save: async () => {} },
      log: () => {},
      types: ["RecipientBounced"],
      // never within the test: only a wake makes it read again
      pollMs: 3_600_000,
      handle: async (batch) => void handled.push(...batch)
    })
    try {
      await settle()
      const idle = reads.n
      await store.append("message-a", 0, [event("MessageCompleted", 1), event("MessageCompleted", 2)])
      await settle()
      expect(reads.n).toBe(idle)
      expect(handled).toEqual([])
      await store.append("message-b", 0, [event("RecipientBounced", 3)])
      await settle()
      expect(handled.map((e) => [e.position, e.event.type])).toEqual([[3, "RecipientBounced"]])
      expect(follower.position()).toBe(3)
    } finally {
      await follower.stop()
    }
  })
})

describe("Follower behind a busy log", () => {
  it("holds only the events of its types: a long run of others while it is busy does not send it back to the store", async () => {
    const { store, counted, reads } = countingStore()
    const handled: Array<number> = []
    let release: (() => void) | undefined
    const gate = new Promise<void>((r) => (release = r))
    const follower = await Follower.start({
      name: "test",
      events: counted,
      checkpoint: { load: async () => 0, save: async () => {} },
      log: () => {},
      types: ["RecipientBounced"],
      // holds at most 8 × 4 events of its types
      batchSize: 4,
      pollMs: 3_600_000,
      handle: async (batch) => {
        await gate
        for (const e of batch) handled.push(e.position)
      }
    })
    try {
      await settle()
      const idle = reads.n
      await store.append("message-a", 0, [event("RecipientBounced", 1)])
      await settle()
      // The handler is busy with position 1; 200 events of other types and one of its own arrive meanwhile.
      for (let i = 0; i < 200; i++) await store.append(`message-b${i}`, 0, [event("MessageCompleted", i)])
      await store.append("message-c", 0, [event("RecipientBounced", 2)])
      release!()
      await settle()
      expect(handled).toEqual([1, 202])
      expect(follower.position()).toBe(202)
      expect(reads.n).toBe(idle)
    } finally {
      await follower.stop()
    }
  })
})

describe("Follower with lingerUntil", () => {
  it("hands full batches as soon as they are held, and lingers over a partial one", async () => {
    const store = EventStore.makeMemory()
    const batches: Array<Array<number>> = []
    const follower = await Follower.start({
      name: "test",
      events: store,
      checkpoint: { load: async () => 0, save: async () => {} },
      log: () => {},
      types: ["RecipientBounced"],
      pollMs: 3_600_000,
      // never within the test: only a full batch ends it
      lingerMs: 3_600_000,
      lingerUntil: 3,
      handle: async (batch) => void batches.push(batch.map((e) => e.position))
    })
    try {
      await settle()
      // The first one wakes the follower, which lingers until three are held; the events of other types between
      // them are passed with them.
      await store.append("message-a", 0, [event("RecipientBounced", 1)])
      await settle()
      expect(batches).toEqual([])
      for (let i = 0; i < 6; i++) {
        await store.append(`message-b${i}`, 0, [event("MessageCompleted", i), event("RecipientBounced", i)])
        await settle()
      }
      expect(batches).toEqual([
        [1, 3, 5],
        [7, 9, 11]
      ])
      expect(follower.position()).toBe(11)
      // One more waits for two others (or the linger's end): nothing is handed.
      await store.append("message-c", 0, [event("RecipientBounced", 14)])
      await settle()
      expect(batches.length).toBe(2)
      expect(follower.position()).toBe(11)
      // Four at once (one append): with the two held, two full batches go at once.
      await store.append(
        "message-d",
        0,
        [1, 2, 3, 4].map((i) => event("RecipientBounced", 20 + i))
      )
      await settle()
      expect(batches).toEqual([
        [1, 3, 5],
        [7, 9, 11],
        [13, 14, 15],
        [16, 17, 18]
      ])
      expect(follower.position()).toBe(18)
    } finally {
      await follower.stop()
    }
  })
})
