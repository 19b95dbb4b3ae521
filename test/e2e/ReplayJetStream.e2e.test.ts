// Incident replay reads a cluster's JetStream log through the same EventStore port as the embedded SQLite log:
// a node on one nats-server records a delivery and a deferral; `missive replay` then reads them back from NATS.
import { join } from "node:path"
import { JetStreamSnapshots } from "@missive/events"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import {
  freePort,
  rawMessage,
  ROOT,
  send,
  spawnNode,
  tempDir,
  testConfig,
  waitFor,
  writeConfig,
  type ChildNode,
  missive
} from "../src/Harness.js"
import { startNatsServer, type NatsServer } from "../src/Nats.js"

describe("replay on the JetStream log", () => {
  const dir = tempDir("missive-replay-js-")
  let nats: NatsServer
  let ok: CaptureServer
  let busy: CaptureServer
  let node: ChildNode | undefined
  let config = ""
  let port = 0

  beforeAll(async () => {
    nats = await startNatsServer()
    ok = await startCapture()
    busy = await startCapture({ onRcpt: () => ({ code: 451, text: "4.2.1 Mailbox busy" }) })
    port = await freePort()
    config = writeConfig(
      dir.path,
      testConfig(join(dir.path, "data"), {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "ok.test": `127.0.0.1:${ok.port}`, "busy.test": `127.0.0.1:${busy.port}` },
        relay: { relay_domains: ["ok.test", "busy.test"] },
        retry: { initial: "1h", max: "2h", lifetime: "5d" },
        cluster: { nats: [nats.url] }
      })
    )
    node = await spawnNode(config)
  }, 120_000)
  afterAll(async () => {
    await node?.stop()
    await Promise.all([ok?.close(), busy?.close()])
    await nats?.dispose()
    dir.remove()
  })

  it("a node keeps the replay's segment digests as the log grows (their stream is made before any replay ran)", async () => {
    const nc = await connect({ servers: nats.url })
    try {
      const jsm = await jetstreamManager(nc, { checkAPI: false })
      // made beside the node's start, not before it: waited for
      const info = await waitFor(
        "the replay stream",
        () => jsm.streams.info(JetStreamSnapshots.streamName("missive")).catch(() => undefined),
        30_000
      )
      expect(info.config.max_bytes).toBeGreaterThan(0)
    } finally {
      await nc.close()
    }
  })

  it("shows a timeline, the queue at a moment and a report, read from NATS", async () => {
    const delivered = await send(
      port,
      { from: "a@sender.test", to: ["x@ok.test"] },
      rawMessage({ from: "a@sender.test", to: "x@ok.test", subject: "js ok" })
    )
    const deferred = await send(
      port,
      { from: "a@sender.test", to: ["y@busy.test"] },
      rawMessage({ from: "a@sender.test", to: "y@busy.test", subject: "js busy" })
    )
    expect(delivered.ok, delivered.response).toBe(true)
    expect(deferred.ok, deferred.response).toBe(true)
    await waitFor("delivery", () => ok.messages.length === 1)
    const timeline = await waitFor(
      "deferral in the JetStream timeline",
      async () => {
        const r = await missive("replay", "timeline", deferred.id!, "--config", config)
        return r.stdout.includes("AttemptDeferred") ? r : undefined
      },
      30_000
    )
    expect(timeline.stdout).toMatch(/451 4\.2\.1 Mailbox busy/)
    expect(timeline.stdout).toMatch(/route:127\.0\.0\.1/)
    const json = JSON.parse((await missive("replay", "timeline", delivered.id!, "--config", config, "--json")).stdout)
    expect(JSON.stringify(json)).toContain("RecipientDelivered")
    const queue = await missive("replay", "queue", "--at", "now", "--config", config)
    expect(queue.code, queue.stderr).toBe(0)
    expect(queue.stdout).toContain(deferred.id!)
    expect(queue.stdout).not.toContain(delivered.id!)
    const report = await missive("replay", "report", "--from", "-1h", "--to", "now", "--config", config, "--json")
    expect(report.code, report.stderr).toBe(0)
    const text = report.stdout
    expect(text).toContain("busy.test")
    expect(text).toContain("ok.test")
    // The policy the node started with is in the JetStream log too (PolicyActivated on the stream `policy`).
    const hash = /received under policy ([0-9a-f]{8}),/.exec(timeline.stdout)?.[1]
    expect(hash, timeline.stdout).toBeDefined()
    const policy = await missive("replay", "policy", hash!, "--config", config)
    expect(policy.code, policy.stderr).toBe(0)
    expect(policy.stdout).toContain(`# policy ${hash}: activated at start on test-node`)
    expect(policy.stdout).toMatch(/^ {2}nats:\n {4}- nats:\/\/127\.0\.0\.1:\d+$/m)
  }, 120_000)
})
