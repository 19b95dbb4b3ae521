// Delivery events to a NATS subject in cluster mode: three node processes on a 3-server JetStream cluster, the
// destination on node-1 only (as the README says: each node that has one publishes the whole log) and without `url`,
// so it publishes on the cluster runtime's own connection, into an R3 stream that covers the subject. Mail goes to
// every node in turn and is driven by whichever pulls it; every acknowledged message's Send and Delivery must be in
// the stream (at-least-once: copies are counted, none may be missing), whichever node drove it.
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, tempDir, waitFor } from "../src/Harness.js"
import { startMissiveCluster, type MissiveCluster } from "../src/MissiveCluster.js"
import { startNatsCluster, type NatsCluster } from "../src/Nats.js"

interface Received {
  readonly eventId: string
  readonly eventType: string
  readonly mail: { readonly messageId: string }
}

describe("event publishing to a NATS subject in a cluster", () => {
  const dir = tempDir("missive-pubc-")
  let nats: NatsCluster
  let nc: NatsConnection
  let sink: CaptureServer
  let cluster: MissiveCluster
  /** Each event the stream stored, by eventId, and how many stream messages there were. */
  const stored = new Map<string, Received>()
  let copies = 0

  beforeAll(async () => {
    nats = await startNatsCluster(3)
    sink = await startCapture()
    nc = await connect({ servers: [...nats.urls] })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: "DELIVERY_EVENTS", subjects: ["missive.delivery"], num_replicas: 3 })
    const messages = await (await jetstream(nc).consumers.get("DELIVERY_EVENTS")).consume()
    void (async () => {
      for await (const m of messages) {
        const e = m.json<Received>()
        if (stored.has(e.eventId)) copies += 1
        stored.set(e.eventId, e)
      }
    })()
    cluster = await startMissiveCluster({
      dir: dir.path,
      nats: nats.urls,
      sinkPort: sink.port,
      lease: "3s",
      extra: (k) => (k === 1 ? { events: { destinations: [{ name: "bus", nats_subject: "missive.delivery", batch_max: 10 }] } } : {})
    })
  }, 180_000)
  afterAll(async () => {
    await cluster?.stop()
    await nc?.close()
    await sink?.close()
    await nats?.dispose()
    dir.remove()
  })

  it("every message's Send and Delivery reach the subject, whichever node accepted and drove it", async () => {
    const acknowledged: Array<string> = []
    for (let seq = 0; seq < 60; seq++) {
      const node = cluster.nodes[seq % 3]!
      const to = `x${seq}@sink.test`
      const r = await send(
        node.port,
        { from: "load@sender.test", to: [to] },
        rawMessage({ from: "load@sender.test", to, subject: `seq ${seq}` })
      )
      expect(r.response).toMatch(/^250/)
      acknowledged.push(r.id!)
    }
    const of = (type: string, id: string) => [...stored.values()].filter((e) => e.eventType === type && e.mail.messageId === id)
    const complete = () => acknowledged.every((id) => of("Send", id).length === 1 && of("Delivery", id).length >= 1)
    await waitFor("a Send and a Delivery in the stream for every acknowledged message", complete, 90_000).catch((e: unknown) => {
      const missing = acknowledged.filter((id) => of("Send", id).length !== 1 || of("Delivery", id).length < 1)
      const types = [...stored.values()].reduce<Record<string, number>>((a, x) => ({ ...a, [x.eventType]: (a[x.eventType] ?? 0) + 1 }), {})
      const log = cluster.nodes[0]!.proc()?.output() ?? ""
      throw new Error(
        `${String(e)}; delivered ${sink.messages.length}, stored ${JSON.stringify(types)}, missing ${missing.length}: ${missing.slice(0, 5).join(" ")}\n` +
          log
            .split("\n")
            .filter((l) => /publish|follower|events/i.test(l))
            .slice(-20)
            .join("\n")
      )
    })
    // Driven by more than the publishing node: the events of its peers' drives came through the replicated log.
    const drivers = new Set(sink.messages.map((m) => m.helo))
    expect(drivers.size).toBeGreaterThan(1)
    const summary = { acknowledged: acknowledged.length, stored: stored.size, copies, drivers: [...drivers].sort() }
    console.log(`nats events in a cluster: ${JSON.stringify(summary)}`)
    expect(summary.acknowledged).toBe(60)
    // A Delivery more than once only for a message delivered more than once (at-least-once), never fewer.
    expect(summary.stored).toBeGreaterThanOrEqual(120)
  }, 180_000)
})
