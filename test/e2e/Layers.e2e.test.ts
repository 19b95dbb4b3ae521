// A node started in process on a swapped layer set: memory stores, a fixed clock, a seeded random source, canned DNS
// and a captured log, instead of SQLite and the system's. It must accept over SMTP and deliver to the next hop, and
// every fact it records must carry the test clock's time: proof that the node reads its services from the layer set.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { stringify } from "yaml"
import { Clock, Config, Memory, Node, type Dns } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, tempDir, testConfig, waitFor } from "../src/Harness.js"

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0)

/** DNS as a table: `layered.test` has one MX whose address is loopback. */
const cannedDns: Dns.DnsResolver = {
  mx: async (name) =>
    name === "layered.test"
      ? {
          records: [{ preference: 10, exchange: "mx.layered.test" }],
          evidence: { name, type: "MX", rcode: "NOERROR", answers: ["10 mx.layered.test"] }
        }
      : { records: [], evidence: { name, type: "MX", rcode: "NXDOMAIN", answers: [] } },
  a: async (name) =>
    name === "mx.layered.test"
      ? { records: ["127.0.0.1"], evidence: { name, type: "A", rcode: "NOERROR", answers: ["127.0.0.1"] } }
      : { records: [], evidence: { name, type: "A", rcode: "NXDOMAIN", answers: [] } },
  aaaa: async (name) => ({ records: [], evidence: { name, type: "AAAA", rcode: "NODATA", answers: [] } })
}

describe("a node on a swapped layer set (memory stores, fixed clock, canned DNS)", () => {
  let dest: CaptureServer
  let node: Node.RunningNode
  const lines: Array<Record<string, unknown>> = []
  const dir = tempDir()

  beforeAll(async () => {
    dest = await startCapture()
    // No DNS server runs: an MX lookup that reached the system resolver would fail and the mail would not arrive.
    const parsed = Config.parse(
      stringify(
        testConfig(dir.path, {
          delivery: { port: dest.port },
          dns: { servers: ["127.0.0.1:1"] },
          relay: { relay_domains: ["layered.test"] }
        })
      ),
      "test"
    )
    if (!parsed.ok) throw new Error(parsed.errors.join("\n"))
    const layer = Memory.layer(parsed.config, {
      clock: Clock.manualClock(T0),
      random: Clock.seededRandom(7),
      dns: cannedDns,
      log: (level, msg, fields) => void lines.push({ level, msg, ...fields })
    })
    node = await Node.startWith(parsed.config, layer, { pollMs: 50 })
  })
  afterAll(async () => {
    await node?.stop()
    await dest?.close()
    dir.remove()
  })

  it("accepts a message and delivers it through the swapped services", async () => {
    const raw = rawMessage({ from: "a@missive.test", to: "b@layered.test", subject: "layers" })
    const r = await send(node.ports["smtp"]!, { from: "a@missive.test", to: ["b@layered.test"] }, raw)
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("Subject: layers")))
    expect(got.to).toEqual(["b@layered.test"])

    const stream = `message-${r.id}`
    await waitFor("completion", async () => (await node.store.events.read(stream)).some((e) => e.event.type === "MessageCompleted"))
    const events = (await node.store.events.read(stream)).map((e) => e.event)
    expect(events.map((e) => e.type)).toEqual([
      "MessageReceived",
      "RecipientsRouted",
      "AttemptStarted",
      "AttemptSucceeded",
      "RecipientDelivered",
      "MessageCompleted"
    ])
    // Every fact is stamped by the test clock, and the route used the canned MX answer.
    expect(new Set(events.map((e) => e.at))).toEqual(new Set([T0]))
    expect(JSON.stringify(events[1])).toContain("10 mx.layered.test")
    // The memory store, not SQLite: nothing was written under the data directory but the lock and the socket.
    expect(existsSync(join(dir.path, "missive.db"))).toBe(false)
    expect(lines.some((l) => l["msg"] === "node started")).toBe(true)
  })

  it("fails to start with a StartError, and releases what it acquired, when the data directory is locked", async () => {
    const other = tempDir()
    // A live process other than this one (the test runner's parent) holds the lock.
    writeFileSync(join(other.path, "missive.lock"), `${process.ppid}\n`)
    const parsed = Config.parse(stringify(testConfig(other.path)), "test")
    if (!parsed.ok) throw new Error(parsed.errors.join("\n"))
    await expect(Node.startWith(parsed.config, Memory.layer(parsed.config, { log: () => {} }))).rejects.toMatchObject({
      _tag: "StartError"
    })
    other.remove()
  })
})
