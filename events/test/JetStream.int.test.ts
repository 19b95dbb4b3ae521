// The JetStream adapters against the same contract suites as memory and SQLite, on a real nats-server (temp store,
// `port: -1`); each fixture gets its own stream and buckets, so the tests share one server.
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll } from "vitest"
import { startNatsServer, type NatsServer } from "../../test/src/Nats.js"
import * as JetStreamBodyStore from "../src/JetStreamBodyStore.js"
import * as JetStreamEventStore from "../src/JetStreamEventStore.js"
import { bodyStoreContract, eventStoreContract } from "./contracts.js"

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
