// Delivery events published to NATS subjects: a real node process (embedded SQLite log) and a real nats-server. One
// destination's subject is covered by a JetStream stream (JetStream publishes, acknowledged, deduplicated by
// Nats-Msg-Id), another's is not (plain publishes and a flush). The node is killed with SIGKILL mid-stream and
// started again: every event of every acknowledged message (delivered and bounced) arrives, copies are counted.
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"
import { startNatsServer, type NatsServer } from "../src/Nats.js"

interface Received {
  readonly eventId: string
  readonly eventType: string
  readonly mail: { readonly messageId: string }
  readonly [k: string]: unknown
}

/** What a subscriber saw: each event by id, and how many times it came. */
class Seen {
  readonly events = new Map<string, Received>()
  readonly times = new Map<string, number>()
  add(data: Uint8Array): void {
    const e = JSON.parse(new TextDecoder().decode(data)) as Received
    this.events.set(e.eventId, e)
    this.times.set(e.eventId, (this.times.get(e.eventId) ?? 0) + 1)
  }
  of(type: string, id: string): ReadonlyArray<Received> {
    return [...this.events.values()].filter((e) => e.eventType === type && e.mail.messageId === id)
  }
  get duplicates(): number {
    return [...this.times.values()].filter((n) => n > 1).length
  }
}

describe("event publishing to NATS subjects", () => {
  let nats: NatsServer
  let nc: NatsConnection
  let sink: CaptureServer
  let node: ChildNode | undefined
  const dir = tempDir()
  // On the streamed subject: what the stream stored, and what a plain subscriber saw (copies included).
  const stored = new Seen()
  const streamedLive = new Seen()
  // On the subject no stream covers: a plain subscriber.
  const plain = new Seen()
  let streamMessages = 0

  beforeAll(async () => {
    sink = await startCapture({ onRcpt: (rcpt) => (rcpt === "gone@sink.test" ? { code: 550, text: "5.1.1 No such user" } : undefined) })
    nats = await startNatsServer()
    nc = await connect({ servers: nats.url })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: "MISSIVE_EVENTS", subjects: ["missive.events"] })
    nc.subscribe("missive.events", { callback: (_e, m) => streamedLive.add(m.data) })
    nc.subscribe("missive.plain", { callback: (_e, m) => plain.add(m.data) })
    await nc.flush()
    const consumer = await jetstream(nc).consumers.get("MISSIVE_EVENTS")
    const messages = await consumer.consume()
    void (async () => {
      for await (const m of messages) {
        streamMessages += 1
        stored.add(m.data)
      }
    })()
  })
  afterAll(async () => {
    await node?.stop()
    await nc?.close()
    await nats?.dispose()
    await sink?.close()
    dir.remove()
  })

  it("publishes every event of delivered and bounced mail across a kill -9, JetStream and plain", async () => {
    const port = await freePort()
    const config = writeConfig(
      dir.path,
      testConfig(`${dir.path}/data`, {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "sink.test": `127.0.0.1:${sink.port}` },
        relay: { relay_domains: ["sink.test"] },
        events: {
          destinations: [
            { name: "bus", nats_subject: "missive.events", url: nats.url, batch_max: 10 },
            { name: "plain", nats_subject: "missive.plain", url: nats.url, types: ["send", "delivery", "bounce"] }
          ]
        }
      })
    )
    node = await spawnNode(config)
    const mail = (to: string, seq: number) =>
      send(port, { from: "load@sink.test", to: [to] }, rawMessage({ from: "load@sink.test", to, subject: `seq ${seq}` }))

    const gone = await mail("gone@sink.test", 0)
    expect(gone.ok).toBe(true)
    const acknowledged: Array<string> = []
    let preKill = 0
    for (let seq = 1; seq < 60; seq++) {
      const r = await mail(`x${seq}@sink.test`, seq)
      if (r.ok && r.id) acknowledged.push(r.id)
      if (seq === 30) {
        await waitFor("events on the stream before the kill", () => stored.events.size >= 20)
        preKill = stored.events.size
        await node.kill9()
        node = await spawnNode(config)
      }
    }
    expect(preKill).toBeGreaterThan(0)
    expect(acknowledged.length).toBeGreaterThanOrEqual(55)

    for (const [what, seen] of [
      ["the stream", stored],
      ["the plain subject", plain]
    ] as const) {
      await waitFor(
        `a Send and a Delivery on ${what} for every acknowledged message`,
        () => acknowledged.every((id) => seen.of("Send", id).length === 1 && seen.of("Delivery", id).length === 1),
        60_000
      )
      const bounce = await waitFor(`the bounce on ${what}`, () => seen.of("Bounce", gone.id!)[0])
      expect(bounce["bounce"]).toMatchObject({
        bounceType: "Permanent",
        bounceSubType: "NoEmail",
        bouncedRecipients: [{ emailAddress: "gone@sink.test", status: "5.1.1" }]
      })
    }
    // The plain destination asked for three types only.
    expect(new Set([...plain.events.values()].map((e) => e.eventType))).toEqual(new Set(["Send", "Delivery", "Bounce"]))
    // The stream stored each event once: the copies a restart sent again were dropped by their Nats-Msg-Id.
    expect(streamMessages).toBe(stored.events.size)
    // Copies only of what followed the last checkpoint before the kill, never a replay of everything.
    expect(streamedLive.duplicates).toBeLessThan(preKill)
    expect(plain.duplicates).toBeLessThan(preKill)
    console.log(
      `nats events: ${stored.events.size} stored once each; sent twice after the kill -9 (${preKill} stored before it): ` +
        `${streamedLive.duplicates} on the streamed subject, ${plain.duplicates} on the plain one`
    )
  }, 180_000)

  it("a node not in a cluster refuses to start with a nats_subject destination that names no url", async () => {
    const config = writeConfig(
      dir.path,
      testConfig(`${dir.path}/data-nourl`, {
        listeners: { smtp: { host: "127.0.0.1", port: await freePort() }, submission: { enabled: false } },
        events: { destinations: [{ name: "bus", nats_subject: "missive.events" }] }
      })
    )
    await expect(spawnNode(config)).rejects.toThrow('events destination "bus": nats_subject needs a url when the node is not in a cluster')
  })
})
