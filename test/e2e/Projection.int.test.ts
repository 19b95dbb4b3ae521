// The benchmark's checkpointed projection runner (bench/lib/Projection.ts) on the SQLite store with SQLite checkpoints: rebuild from 0 is idempotent,
// a projection that crashes mid-run catches up from its checkpoint to the same state, and one that falls behind
// catches up with only the new events.
import { Message } from "@missive/core"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { EventStore, SqliteStore } from "@missive/events"
import * as Projection from "../../bench/lib/Projection.js"

const dir = mkdtempSync(join(tmpdir(), "missive-projection-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const meta = (at: number) => ({ v: 1, at, node: "n1", policy: "p" })
const reply = { code: 250, enhanced: "2.0.0", text: "OK" }
const defer = { code: 451, enhanced: "4.7.1", text: "Greylisted" }

/** Message i: to d(i%7); every third is deferred and left in the queue, the rest delivered. */
const lifecycle = (i: number): Array<Message.Event> => {
  const at = 1_000_000 + i * 1000
  const rcpt = `u${i}@d${i % 7}.test`
  const head: Array<Message.Event> = [
    {
      ...meta(at),
      type: "MessageReceived",
      id: `m${i}`,
      sender: "s@x.test",
      recipients: [rcpt],
      size: 100,
      digest: "sha256:0",
      client: { ip: "127.0.0.1", helo: "h", tls: false }
    },
    {
      ...meta(at + 1),
      type: "RecipientsRouted",
      routes: [
        { rcpt, destination: { kind: "smtp", key: `mx:d${i % 7}.test`, hops: [{ host: "mx", port: 25, preference: 0 }], via: "mx" } }
      ]
    },
    { ...meta(at + 1), type: "AttemptStarted", attempt: 1, rcpts: [rcpt], destination: `mx:d${i % 7}.test` }
  ]
  if (i % 3 === 0)
    return [
      ...head,
      { ...meta(at + 5), type: "AttemptDeferred", attempt: 1, rcpts: [rcpt], host: "mx:25", reply: defer, nextAttemptAt: at + 300_000 }
    ]
  return [
    ...head,
    { ...meta(at + 5), type: "AttemptSucceeded", attempt: 1, rcpts: [rcpt], host: "mx:25", reply },
    { ...meta(at + 5), type: "RecipientDelivered", rcpt, host: "mx:25", reply },
    { ...meta(at + 5), type: "MessageCompleted", delivered: 1, bounced: 0, expired: 0, deleted: false }
  ]
}

const fill = async (store: SqliteStore.SqliteStore, from: number, to: number) => {
  await Promise.all(
    Array.from({ length: to - from }, (_, k) => store.events.append(EventStore.streamOf(`m${from + k}`), 0, lifecycle(from + k)))
  )
}

const snapshot = (m: Map<string, ReadonlyArray<Message.Event>>) =>
  [...Projection.queueStates(m).entries()].sort(([a], [b]) => (a < b ? -1 : 1))

describe("checkpointed projections", () => {
  const store = SqliteStore.open({ path: join(dir, "missive.db"), synchronous: "OFF" })
  const checkpoints = () => Projection.sqliteCheckpoints(join(dir, "projections.db"))

  it("rebuilds from position 0 to the same state, every time", async () => {
    await fill(store, 0, 900)
    const cp = checkpoints()
    const a = await Projection.rebuild(store.events, Projection.queue, cp, { batch: 97, checkpointEvery: 500 })
    const b = await Projection.rebuild(store.events, Projection.queue, cp, { batch: 1000 })
    expect(a.position).toBe(await store.events.head())
    expect(snapshot(a.state)).toEqual(snapshot(b.state))
    expect(a.state.size).toBe(300)
    // The projection's states are the folds of the open messages' own streams.
    for (const [id, state] of snapshot(a.state).slice(0, 50))
      expect(state).toEqual(Message.fold((await store.events.read(EventStore.streamOf(id))).map((e) => e.event)))
    expect(snapshot(a.state).every(([, st]) => st.status === "active")).toBe(true)
    const again = await Projection.run(store.events, Projection.queue, cp)
    expect(again.applied).toBe(0)
    expect(snapshot(again.state)).toEqual(snapshot(a.state))
    await cp.close()
  })

  it("catches up from its checkpoint after a crash and ends where a clean run ends", async () => {
    const cp = checkpoints()
    await cp.reset("destinations")
    await expect(
      Projection.run(store.events, Projection.destinations, cp, {
        batch: 200,
        checkpointEvery: 1000,
        afterBatch: (p) => {
          if (p >= 3000) throw new Error("crash")
        }
      })
    ).rejects.toThrow("crash")
    await cp.close()
    // A new process: reopen the checkpoint file.
    const cp2 = checkpoints()
    const saved = await cp2.load("destinations")
    expect(saved?.position).toBeGreaterThan(0)
    expect(saved!.position).toBeLessThan(3000)
    const resumed = await Projection.run(store.events, Projection.destinations, cp2, { batch: 200, checkpointEvery: 1000 })
    expect(resumed.applied).toBe((await store.events.head()) - saved!.position)
    const clean = await Projection.run(store.events, Projection.destinations, Projection.memoryCheckpoints())
    expect(resumed.state).toEqual(clean.state)
    const d0 = resumed.state["d0.test"]!
    expect(d0.messages).toBe(129)
    expect(d0.delivered + d0.deferred).toBe(129)
    await cp2.close()
  })

  it("a projection that fell behind applies only the new events", async () => {
    const cp = checkpoints()
    const before = await Projection.run(store.events, Projection.queue, cp)
    await fill(store, 900, 1200)
    const after = await Projection.run(store.events, Projection.queue, cp)
    expect(after.applied).toBe((await store.events.head()) - before.position)
    const full = await Projection.rebuild(store.events, Projection.queue, Projection.memoryCheckpoints())
    expect(snapshot(after.state)).toEqual(snapshot(full.state))
    expect(after.state.size).toBe(400)
    await cp.close()
  })

  it("discards a checkpoint of another projection version", async () => {
    const cp = Projection.memoryCheckpoints()
    await cp.save("queue", { position: 5, version: 0, state: [] })
    const r = await Projection.run(store.events, Projection.queue, cp)
    expect(r.applied).toBe(await store.events.head())
    await store.close()
  })
})
