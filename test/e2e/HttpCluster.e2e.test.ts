// The admin HTTP listener of a node in cluster mode (one JetStream server, a real node process): readiness includes
// the NATS connection, /api/v1/cluster lists the node from the membership heartbeats, injection goes through the
// cluster's accept commit, and /metrics carries the JetStream operations (intake's commit, the log's appends).
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"
import { startNatsServer, type NatsServer } from "../src/Nats.js"
import { Http } from "@missive/node"

const TOKEN = "cluster-admin-token-0123456789"

describe("HTTP API of a clustered node", () => {
  const dir = tempDir()
  let nats: NatsServer
  let capture: CaptureServer
  let node: ChildNode
  let base: string

  const get = async (path: string): Promise<{ status: number; text: string; json: any }> => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const text = await r.text()
    return { status: r.status, text, json: text.startsWith("{") ? JSON.parse(text) : undefined }
  }

  beforeAll(async () => {
    nats = await startNatsServer()
    capture = await startCapture()
    const http = await freePort()
    base = `http://127.0.0.1:${http}`
    const config = testConfig(dir.path, {
      node_id: "http-c1",
      listeners: { smtp: { port: await freePort() }, submission: { enabled: false }, http: { port: http } },
      routes: { "remote.test": `127.0.0.1:${capture.port}` },
      cluster: { nats: [nats.url], prefix: "httpc" },
      http: { tokens: [{ name: "ops", scope: "admin", hash: Http.hashToken(TOKEN) }] }
    })
    node = await spawnNode(writeConfig(dir.path, config))
  })

  afterAll(async () => {
    await node?.stop()
    await capture?.close()
    await nats?.dispose()
    dir.remove()
  })

  it("reports the cluster, injects through the accept commit and measures JetStream calls", async () => {
    const ready = await waitFor("ready", async () => {
      const r = await fetch(`${base}/readyz`).catch(() => undefined)
      return r?.ok ? ((await r.json()) as any) : undefined
    })
    expect(ready.checks).toEqual({ store: "ok", nats: "ok" })
    const cluster = await waitFor("the node's heartbeat", async () => {
      const c = await get("/api/v1/cluster")
      return c.json.nodes.length > 0 ? c.json : undefined
    })
    expect(cluster.clustered).toBe(true)
    expect(cluster.nodes[0]).toMatchObject({ node: "http-c1", alive: true, ports: { http: Number(new URL(base).port) } })

    const r = await fetch(`${base}/api/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({
        envelope: { from: "a@sender.test", to: ["one@remote.test", "two@remote.test"] },
        raw: "Subject: cluster\n\nhi\n"
      })
    })
    const injected = (await r.json()) as any
    expect(r.status, JSON.stringify(injected)).toBe(200)
    expect(injected.recipients.map((x: any) => x.status)).toEqual(["queued", "queued"])
    await waitFor("delivery", () => capture.messages.some((m) => m.raw.toString().includes("Subject: cluster")))
    const timeline = await waitFor("the message in the log", async () => {
      const t = await get(`/api/v1/messages/${injected.id}`)
      return t.status === 200 && t.json.entries.some((e: any) => e.type === "MessageCompleted") ? t.json : undefined
    })
    const dest = timeline.entries.find((e: any) => e.type === "AttemptStarted").event.destination as string
    const metrics = await waitFor("metrics", async () => {
      const m = (await get("/metrics")).text
      return m.includes(`missive_delivered_total{destination="${dest}"} 2`) ? m : undefined
    })
    const count = (op: string) =>
      Number(new RegExp(`^missive_jetstream_seconds_count\\{op="${op}",result="ok"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0)
    expect(count("commit")).toBeGreaterThanOrEqual(1)
    expect(count("append")).toBeGreaterThanOrEqual(1)
    expect(count("read")).toBeGreaterThanOrEqual(1)
    expect(metrics).toMatch(/^missive_received_total 1$/m)
  })
})
