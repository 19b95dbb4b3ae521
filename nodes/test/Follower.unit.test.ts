// The log follower with `types`: only an append of one of its types wakes it before its poll; the handler gets those
// events only, and the position moves past the others.
import { EventStore } from "@missive/events"
import type { Message } from "@missive/core"
import { describe, expect, it } from "vitest"
import * as Follower from "../src/publish/Follower.js"

const event = (type: Message.EventType, at: number) => ({ type, v: 1, at, node: "n", policy: "p" }) as unknown as Message.Event

/** Lets the follower's loop run until it waits again (promise turns and immediates only, no clock). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

describe("Follower", () => {
  it("is woken by an append of its types only, and reads past the others", async () => {
    const store = EventStore.makeMemory()
    let reads = 0
    const counted: EventStore.EventStore = {
      ...store,
      readAllOf: (after, limit, types) => {
        reads += 1
        return store.readAllOf!(after, limit, types)
      }
    }
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
      const idle = reads
      await store.append("message-a", 0, [event("MessageCompleted", 1), event("MessageCompleted", 2)])
      await settle()
      expect(reads).toBe(idle)
      await store.append("message-b", 0, [event("RecipientBounced", 3)])
      await settle()
      expect(reads).toBeGreaterThan(idle)
      expect(handled.map((e) => [e.position, e.event.type])).toEqual([[3, "RecipientBounced"]])
      expect(follower.position()).toBe(3)
    } finally {
      await follower.stop()
    }
  })
})
