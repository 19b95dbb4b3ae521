// The JetStream adapters against the same contract suites as memory and SQLite, on a real nats-server (temp store,
// `port: -1`); each fixture gets its own stream and buckets, so the tests share one server.
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNatsServer, type NatsServer } from "../../test/src/Nats.js"
import * as JetStreamBodyStore from "../src/JetStreamBodyStore.js"
import * as JetStreamEventStore from "../src/JetStreamEventStore.js"
import * as JetStreamWork from "../src/JetStreamWork.js"
import { bodyStoreContract, eventStoreContract, workContract } from "./contracts.js"

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
  return { store: s, reopen: async () => { await s.close(); s = await JetStreamEventStore.open({ nc, prefix: p }); return s }, dispose: () => s.close() }
})
bodyStoreContract("jetstream object store", async () => {
  const s = await JetStreamBodyStore.open({ nc, prefix: prefix() })
  return { store: s, dispose: () => s.close() }
})
workContract("jetstream kv", async () => {
  const s = await JetStreamWork.open({ nc, prefix: prefix(), partitions: 4 })
  return { store: s, dispose: () => s.close() }
})

describe("jetstream work: due-time horizon", () => {
  it("keeps far-future entries in KV only and brings them into memory when they come within the horizon", async () => {
    const w = await JetStreamWork.open({ nc, prefix: prefix(), partitions: 4, horizonMs: 2000 })
    try {
      const t = Date.now()
      await w.schedule("near", t + 200)
      await w.schedule("far", t + 4000)
      expect(w.inMemory()).toBe(1)
      expect(await w.count()).toBe(2)
      await new Promise((r) => setTimeout(r, 300))
      expect((await w.claim(Date.now(), 10, "n1", Date.now() + 60_000)).map((i) => i.id)).toEqual(["near"])
      const deadline = Date.now() + 10_000
      let got: ReadonlyArray<{ id: string }> = []
      while (got.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
        got = await w.claim(Date.now(), 10, "n1", Date.now() + 60_000)
      }
      expect(got.map((i) => i.id)).toEqual(["far"])
      expect(Date.now()).toBeGreaterThanOrEqual(t + 4000)
    } finally {
      await w.close()
    }
  }, 20_000)
})
