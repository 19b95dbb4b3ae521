// The cluster scheduler on a real nats-server: the inbox's accept commit reaches a node through the shared consumer
// with its events and body; completion removes the carrier; a deferral comes back after its NAK delay; a node that
// stops acking loses the message to a peer after AckWait; a wake token reaches a node for a carrier held nowhere.
import { Hash, type Message } from "@missive/core"
import { JetStreamInbox } from "@missive/events"
import { jetstreamManager, RetentionPolicy } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNatsServer, type NatsServer } from "../../test/src/Nats.js"
import * as ClusterWork from "../src/scheduler/ClusterWork.js"

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

const received = (id: string, at: number): Message.Event =>
  ({
    type: "MessageReceived",
    v: 1,
    at,
    node: "n1",
    policy: "p",
    id,
    sender: "a@example.org",
    recipients: ["b@example.net"],
    size: 5,
    digest: "sha256:x",
    client: { ip: "127.0.0.1", helo: "h", tls: false }
  }) as unknown as Message.Event

const until = async <T>(f: () => Promise<T | undefined>, ms = 10_000): Promise<T> => {
  const end = Date.now() + ms
  for (;;) {
    const v = await f()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 50))
  }
}

const setup = async (ackWaitMs = 1000) => {
  const inbox = await JetStreamInbox.open({ nc, prefix: `cw${++n}`, shards: 2, ackWaitMs })
  const node = (name: string) =>
    ClusterWork.open({ nc, inbox, now: () => Date.now(), fetchBody: async () => Buffer.from("large"), log: () => {} })
  return { inbox, node, name: n }
}

const claimOne = async (w: ClusterWork.ClusterWork, ms = 10_000) => until(async () => (await w.claim(Date.now(), 10, "n", 0))[0], ms)

/** The first claim of either node; one poller, so no losing poller is left to swallow a later token. */
const claimAny = async (ws: ReadonlyArray<ClusterWork.ClusterWork>, ms = 10_000) =>
  until(async () => {
    for (const w of ws) {
      const item = (await w.claim(Date.now(), 10, "n", 0))[0]
      if (item) return { w, item }
    }
    return undefined
  }, ms)

/**
 * Twelve accepts group-committed together, all claimed by `w`, all but one batch member completed: the one left (a
 * member of a batch, its batch held by `w`), for a test to defer.
 */
const allButOneDone = async (inbox: JetStreamInbox.Inbox, w: ClusterWork.ClusterWork, prefix: string): Promise<string> => {
  const ids = Array.from({ length: 12 }, (_, i) => `${prefix}${i}`)
  const placed = await Promise.all(ids.map((id) => inbox.commit(id, [received(id, 1)], Buffer.from(`body ${id}`))))
  const placeOf = (id: string) => `${placed[ids.indexOf(id)]!.shard}:${placed[ids.indexOf(id)]!.seq}`
  const deferred = ids.find((id) => ids.filter((x) => placeOf(x) === placeOf(id)).length > 1)!
  const got = new Set<string>()
  await until(async () => {
    for (const item of await w.claim(Date.now(), 100, "n", 0)) got.add(item.id)
    return got.size === ids.length ? true : undefined
  })
  for (const id of ids) if (id !== deferred) await w.complete(id)
  return deferred
}

describe("cluster work on the inbox consumer", () => {
  it("hands a committed message to a node with its events and body; completion removes the carrier", async () => {
    const { inbox, node } = await setup()
    const w = await node("a")
    try {
      await inbox.commit("m1", [received("m1", 1)], Buffer.from("hello"))
      expect(await inbox.count()).toBe(1)
      const item = await claimOne(w)
      expect(item.id).toBe("m1")
      expect(item.carried?.events[0]?.type).toBe("MessageReceived")
      expect(item.carried?.body.toString()).toBe("hello")
      expect(w.holds("m1")).toBe(true)
      await w.complete("m1")
      await until(async () => ((await inbox.count()) === 0 ? true : undefined))
      expect(w.holds("m1")).toBe(false)
    } finally {
      await w.close()
    }
  })

  it("brings a deferred message back after its delay, not before", async () => {
    const { inbox, node } = await setup()
    const w = await node("a")
    try {
      await inbox.commit("m2", [received("m2", 1)], Buffer.from("x"))
      await claimOne(w)
      const t0 = Date.now()
      await w.schedule("m2", t0 + 800)
      expect(w.holds("m2")).toBe(false)
      const again = await claimOne(w)
      expect(again.id).toBe("m2")
      expect(Date.now() - t0).toBeGreaterThanOrEqual(700)
      await w.complete("m2")
    } finally {
      await w.close()
    }
  })

  it("gives a message held by a node that stopped acking to a peer after AckWait", async () => {
    const { inbox, node } = await setup(1000)
    const a = await node("a")
    const b = await node("b")
    try {
      // Only a pulls at first.
      await inbox.commit("m3", [received("m3", 1)], Buffer.from("x"))
      await claimOne(a)
      await a.close() // dies without acking: no in-progress acks any more
      const t0 = Date.now()
      const item = await claimOne(b)
      expect(item.id).toBe("m3")
      expect(item.carried?.body.toString()).toBe("x")
      expect(Date.now() - t0).toBeLessThan(5_000)
      await b.complete("m3")
      await until(async () => ((await inbox.count()) === 0 ? true : undefined))
    } finally {
      await b.close()
    }
  })

  it("keeps a slow drive's lease with in-progress acks; a wake token reaches a node for a carrier held elsewhere", async () => {
    const { inbox, node } = await setup(1000)
    const a = await node("a")
    const b = await node("b")
    try {
      await inbox.commit("m4", [received("m4", 1)], Buffer.from("x"))
      const got = await claimAny([a, b])
      const first = { w: got.w, o: got.w === a ? b : a }
      // Held for three AckWaits: the in-progress acks keep it; the other node never sees it.
      await new Promise((r) => setTimeout(r, 3000))
      expect(first.w.holds("m4")).toBe(true)
      expect((await first.o.claim(Date.now(), 10, "n", 0)).length).toBe(0)
      // Deferred far out, then woken by an operator on the other node: the wake token comes to someone now.
      await first.w.schedule("m4", Date.now() + 3_600_000)
      await first.o.schedule("m4", Date.now())
      const woken = (await claimAny([a, b])).item
      expect(woken.id).toBe("m4")
      expect(woken.carried).toBeUndefined()
      // Completing through the wake token removes the carrier that waits with its long delay.
      const holder = a.holds("m4") ? a : b
      await holder.complete("m4")
      await until(async () => ((await inbox.count()) === 0 ? true : undefined))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("a node that opens the inbox while the first node is still creating its shards pulls from every shard", async () => {
    // The first node of a cluster configured for 3 shards has made shard 0 (which records the count) and not yet
    // the others when a second node opens the inbox with another shard count in its configuration: the second node
    // must take the recorded count and make the missing shards, never settle for the shards it happens to find.
    const prefix = `race${++n}`
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({
      name: JetStreamInbox.streamNames(prefix, 1)[0]!,
      subjects: [`${prefix}.in.0.*`, `${prefix}.wake.0.*`],
      retention: RetentionPolicy.Workqueue,
      allow_direct: true,
      duplicate_window: 120_000_000_000,
      max_msg_size: -1,
      metadata: { [JetStreamInbox.SHARDS_KEY]: "3" }
    })
    const second = await JetStreamInbox.open({ nc, prefix, shards: 1, ackWaitMs: 1000 })
    expect(second.shards).toBe(3)
    for (const name of JetStreamInbox.streamNames(prefix, 3)) expect((await jsm.consumers.info(name, second.consumer)).name).toBe("drive")
    // A message committed to the last shard reaches a node of the second opener.
    const w = await ClusterWork.open({ nc, inbox: second, now: () => Date.now(), fetchBody: async () => Buffer.alloc(0), log: () => {} })
    try {
      let id = ""
      for (let i = 0; ; i++) if (Hash.fnv1a32((id = `m-${i}`)) % 3 === 2) break
      expect((await second.commit(id, [received(id, 1)], Buffer.from("x"))).shard).toBe(2)
      expect((await claimOne(w)).id).toBe(id)
      // A third opener (a fresh inbox object, as after a restart) reads the same count.
      expect((await JetStreamInbox.open({ nc, prefix, shards: 5 })).shards).toBe(3)
    } finally {
      await w.close()
    }
  })

  it("group-commits accepts that arrive together in one batch carrier, acked once every member is done", async () => {
    const { inbox, node } = await setup(1000)
    const a = await node("a")
    const b = await node("b")
    try {
      // More accepts at once than publishes in flight: the rest wait and go out together.
      const ids = Array.from({ length: 12 }, (_, i) => `g${i}`)
      const placed = await Promise.all(ids.map((id) => inbox.commit(id, [received(id, 1)], Buffer.from(`body ${id}`))))
      const stored = new Set(placed.map((p) => `${p.shard}:${p.seq}`))
      expect(stored.size).toBeLessThan(ids.length)
      expect(await inbox.count()).toBe(stored.size)
      // `list` names every member; `find` finds a member inside its batch.
      expect(new Set((await inbox.list(100)).map((e) => e.id))).toEqual(new Set(ids))
      const g5 = await inbox.find("g5")
      expect(g5?.inBatch || placed[5]!.seq === g5?.seq).toBe(true)
      expect(g5?.body?.toString()).toBe("body g5")
      // a holds them all (b does not pull yet); each carries its own events and body, first delivery: unlogged.
      const items = await until(async () => {
        const got = await a.claim(Date.now(), 100, "n", 0)
        return got.length > 0 ? got : undefined
      })
      const all = [...items]
      await until(async () => {
        all.push(...(await a.claim(Date.now(), 100, "n", 0)))
        return all.length === ids.length ? true : undefined
      })
      for (const item of all) {
        expect(item.carried?.body.toString()).toBe(`body ${item.id}`)
        expect(item.unlogged).toBe(true)
      }
      // Completing all but the deferred one: the batch is not acked while a member is open.
      const placeOf = (id: string) => `${placed[ids.indexOf(id)]!.shard}:${placed[ids.indexOf(id)]!.seq}`
      const deferred = ids.find((id) => ids.filter((x) => placeOf(x) === placeOf(id)).length > 1)!
      expect((await inbox.find(deferred))?.inBatch).toBe(true)
      for (const item of all) if (item.id !== deferred) await a.complete(item.id)
      expect(a.holds(deferred)).toBe(true)
      // The deferred member gets a carrier of its own (due later) and its batch is acked: only that carrier is left.
      const t0 = Date.now()
      await a.schedule(deferred, t0 + 1500)
      await until(async () => ((await inbox.count()) === 1 ? true : undefined))
      const own = await inbox.find(deferred)
      expect(own?.inBatch).toBe(false)
      expect(own?.body?.toString()).toBe(`body ${deferred}`)
      const back = await claimAny([a, b])
      expect(back.item.id).toBe(deferred)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1400)
      expect(back.item.unlogged).toBe(false)
      await back.w.complete(deferred)
      await until(async () => ((await inbox.count()) === 0 ? true : undefined))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("gives a batch member deferred after this node's lease lapsed a carrier of its own (its events are nowhere else yet)", async () => {
    const { inbox } = await setup(1000)
    // node a's clock can jump past its lease: as after a partition, when a delivery was fenced for a lost lease
    let skew = 0
    const a = await ClusterWork.open({ nc, inbox, now: () => Date.now() + skew, fetchBody: async () => Buffer.alloc(0), log: () => {} })
    try {
      const deferred = await allButOneDone(inbox, a, "l")
      skew = 10_000
      expect(a.holds(deferred)).toBe(false)
      await a.schedule(deferred, Date.now() + 500)
      const own = await until(async () => {
        const found = await inbox.find(deferred)
        return found && !found.inBatch ? found : undefined
      })
      expect(own.body?.toString()).toBe(`body ${deferred}`)
    } finally {
      await a.close()
    }
  })

  it("offers a batch member whose split failed (no quorum) to the host again, and splits it then", async () => {
    const { inbox } = await setup(1000)
    // The inbox as a node in a minority sees it: the first split finds no quorum.
    let refusals = 1
    const split: JetStreamInbox.Inbox["split"] = async (member, inline, dueAt) => {
      if (refusals-- > 0) throw new Error("accept commit failed on every shard")
      return inbox.split(member, inline, dueAt)
    }
    const a = await ClusterWork.open({
      nc,
      inbox: { ...inbox, split },
      now: () => Date.now(),
      fetchBody: async () => Buffer.alloc(0),
      log: () => {}
    })
    try {
      const deferred = await allButOneDone(inbox, a, "s")
      await a.schedule(deferred, Date.now() + 200)
      expect((await inbox.find(deferred))?.inBatch).toBe(true)
      // Offered again (the old code left it claimed, driven by no one, its batch kept from peers by in-progress acks).
      const again = await claimOne(a, 5_000)
      expect(again.id).toBe(deferred)
      expect(again.carried?.body.toString()).toBe(`body ${deferred}`)
      await a.schedule(deferred, Date.now() + 200)
      const own = await until(async () => {
        const found = await inbox.find(deferred)
        return found && !found.inBatch ? found : undefined
      })
      expect(own.body?.toString()).toBe(`body ${deferred}`)
      await until(async () => ((await inbox.count()) === 1 ? true : undefined))
    } finally {
      await a.close()
    }
  })

  it("gives a batch held by a node that stopped acking to a peer, every member with it", async () => {
    const { inbox, node } = await setup(1000)
    const a = await node("a")
    try {
      const ids = Array.from({ length: 8 }, (_, i) => `f${i}`)
      await Promise.all(ids.map((id) => inbox.commit(id, [received(id, 1)], Buffer.from(id))))
      const got = new Set<string>()
      await until(async () => {
        for (const item of await a.claim(Date.now(), 100, "n", 0)) got.add(item.id)
        return got.size === ids.length ? true : undefined
      })
      // One member completed before a dies: the peer gets the others again (and that one, to find it done).
      await a.complete(ids[0]!)
      await a.close()
      const b = await node("b")
      try {
        const again = new Set<string>()
        await until(async () => {
          for (const item of await b.claim(Date.now(), 100, "n", 0)) {
            again.add(item.id)
            expect(item.unlogged).toBe(false)
          }
          return ids.slice(1).every((id) => again.has(id)) ? true : undefined
        })
        for (const id of again) await b.complete(id)
        await until(async () => ((await inbox.count()) === 0 ? true : undefined))
      } finally {
        await b.close()
      }
    } finally {
      await a.close()
    }
  })
})
