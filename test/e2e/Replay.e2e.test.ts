// Replay against a real node's log: the fold of every recorded stream equals the state the live actor host held
// (retries, a bounce, an expiry and DSNs included), every event carries what replay needs, and the `missive replay`
// commands (timeline, queue --at, report --html, what-if, inject) run as a user runs them.
import { Message } from "@missive/core"
import { EventStore } from "@missive/events"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { stringify } from "yaml"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Config, Log, Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, ROOT, send, tempDir, testConfig, waitFor, writeConfig, missive } from "../src/Harness.js"

/** The log also holds other aggregates (the suppression list a hard bounce feeds): only message streams complete. */
const isMessageStream = (stream: string): boolean => stream.startsWith("message-")

describe("replay of a real node's log", () => {
  const dir = tempDir("missive-replay-")
  let flaky: CaptureServer, picky: CaptureServer, down: CaptureServer, senderMx: CaptureServer, target: CaptureServer
  let node: Node.RunningNode
  let configPath = ""
  const observed = new Map<string, Message.State>()
  const tries = new Map<string, number>()
  const ids: Record<string, string> = {}

  beforeAll(async () => {
    flaky = await startCapture({
      onData: (m) => {
        const k = /Subject: (.*)/.exec(m.raw.toString())?.[1] ?? ""
        const n = (tries.get(k) ?? 0) + 1
        tries.set(k, n)
        return n <= 2 ? { code: 451, text: "4.3.2 Try again later" } : undefined
      }
    })
    picky = await startCapture({ onRcpt: (r) => (r.startsWith("nobody@") ? { code: 550, text: "5.1.1 No such user here" } : undefined) })
    down = await startCapture({ onRcpt: () => ({ code: 451, text: "4.7.1 Greylisted forever" }) })
    senderMx = await startCapture()
    target = await startCapture()
    const config = testConfig(join(dir.path, "data"), {
      routes: {
        "flaky.test": `127.0.0.1:${flaky.port}`,
        "picky.test": `127.0.0.1:${picky.port}`,
        "down.test": `127.0.0.1:${down.port}`,
        "sender.test": `127.0.0.1:${senderMx.port}`
      },
      relay: { relay_domains: ["flaky.test", "picky.test", "down.test"] },
      retry: { initial: "300ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "3s" }
    })
    configPath = writeConfig(dir.path, config)
    const parsed = Config.parse(stringify(config), "test")
    if (!parsed.ok) throw new Error(parsed.errors.join("\n"))
    node = await Node.start(parsed.config, { log: Log.silent, pollMs: 100, onState: (id, s) => void observed.set(id, s) })
    const port = node.ports["smtp"]!
    const mail = async (name: string, from: string, to: Array<string>) => {
      const r = await send(port, { from, to }, rawMessage({ from, to: to[0]!, subject: name }))
      expect(r.ok, r.response).toBe(true)
      ids[name] = r.id!
    }
    await mail("flaky", "a@sender.test", ["b@flaky.test"])
    await mail("mixed", "c@sender.test", ["ok@picky.test", "nobody@picky.test"])
    await mail("down", "d@sender.test", ["x@down.test"])
    await mail("fine", "e@sender.test", ["y@picky.test"])
    // Every message completes: flaky after 3 attempts, mixed with a bounce and a DSN, down by expiry and a DSN.
    await waitFor(
      "all messages and DSNs completed",
      async () => {
        const all = await node.store.events.readAll(0, 100_000)
        const streams = new Set(all.map((e) => e.stream).filter(isMessageStream))
        const done = new Set(all.filter((e) => e.event.type === "MessageCompleted").map((e) => e.stream))
        return streams.size >= 6 && [...streams].every((s) => done.has(s)) && senderMx.messages.length >= 2
      },
      40_000
    )
    await node.stop()
  }, 90_000)

  afterAll(async () => {
    await node?.stop()
    await Promise.all([flaky, picky, down, senderMx, target].map((s) => s?.close()))
    dir.remove()
  })

  it("folding each recorded stream gives exactly the state the live host had", async () => {
    const { SqliteStore } = await import("@missive/events")
    const store = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    const all = await store.events.readAll(0, 100_000)
    const streams = [...new Set(all.map((e) => e.stream).filter(isMessageStream))]
    expect(streams.length).toBe(6)
    for (const stream of streams) {
      const id = EventStore.idOf(stream)
      const folded = Message.fold((await store.events.read(stream)).map((e) => e.event))
      expect(observed.has(id), `host observed ${id}`).toBe(true)
      expect(folded).toEqual(observed.get(id))
    }
    const summary: Record<string, number> = {}
    for (const e of all) summary[e.event.type] = (summary[e.event.type] ?? 0) + 1
    // 4 messages and 2 DSNs; delivered: flaky, ok@picky, y@picky and both DSNs; the expiry's deferrals depend on timing.
    expect(summary).toMatchObject({
      MessageReceived: 6,
      RecipientDelivered: 5,
      RecipientBounced: 1,
      RecipientExpired: 1,
      BounceQueued: 2,
      MessageCompleted: 6
    })
    expect(summary["AttemptDeferred"]).toBeGreaterThanOrEqual(2 + 3)
    // What replay needs is on every event.
    const hash = all[0]!.event.policy
    for (const { event: e } of all) {
      expect(e).toMatchObject({ v: Message.SCHEMA_VERSION, node: "test-node", policy: hash })
      expect(e.at).toBeGreaterThan(1.7e12)
      if (e.type === "AttemptDeferred" || e.type === "AttemptFailed" || e.type === "AttemptSucceeded") {
        expect(e.host).toMatch(/^127\.0\.0\.1:\d+$/)
        expect(e.reply.text.length).toBeGreaterThan(0)
      }
    }
    expect(all.find((e) => e.event.type === "AttemptFailed")?.event).toMatchObject({
      reply: { code: 550, enhanced: "5.1.1", text: "No such user here" }
    })
    expect(hash).toMatch(/^[0-9a-f]{8}$/)
    await store.close()
  })

  it("replay timeline shows every attempt with host, full reply and the delay before the next", async () => {
    const r = await missive("replay", "timeline", ids["flaky"]!, "--config", configPath)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.match(/AttemptDeferred .*451 4\.3\.2 Try again later/g)).toHaveLength(2)
    expect(r.stdout).toMatch(/next attempt after \d+ms/)
    expect(r.stdout).toMatch(/AttemptSucceeded .*via 127\.0\.0\.1:\d+: 250/)
    expect(r.stdout).toMatch(/b@flaky\.test: delivered, 3 attempt\(s\)/)
    const j = await missive("replay", "timeline", ids["mixed"]!, "--config", configPath, "--json")
    const t = JSON.parse(j.stdout) as { entries: Array<{ type: string; node: string; sinceStartMs: number }>; related: Array<string> }
    expect(t.entries[0]!.type).toBe("MessageReceived")
    expect(t.entries.every((e) => e.node === "test-node" && e.sinceStartMs >= 0)).toBe(true)
    expect(t.related).toHaveLength(1)
    const missing = await missive("replay", "timeline", "NOSUCHID", "--config", configPath)
    expect(missing.code).toBe(1)
  })

  it("replay queue --at shows the message that was waiting at that moment", async () => {
    const { SqliteStore } = await import("@missive/events")
    const store = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    const deferred = (await store.events.read(EventStore.streamOf(ids["down"]!))).find((e) => e.event.type === "AttemptDeferred")!
    await store.close()
    const at = new Date(deferred.event.at + 1).toISOString()
    const r = await missive("replay", "queue", "--at", at, "--config", configPath)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/ID\s+AGE\s+SIZE\s+NEXT ATTEMPT\s+SENDER/)
    expect(r.stdout).toContain(ids["down"]!)
    expect(r.stdout).toMatch(/x@down\.test {2}deferred {2}\(451 4\.7\.1 Greylisted forever\)/)
    const now = await missive("replay", "queue", "--at", "now", "--config", configPath, "--json")
    expect((JSON.parse(now.stdout) as { rows: Array<unknown> }).rows).toEqual([])
    const bad = await missive("replay", "queue", "--at", "teatime", "--config", configPath)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--at: expected an ISO 8601 time/)
  })

  it("replay report prints per-destination tables and writes a self-contained HTML page", async () => {
    const html = join(dir.path, "report.html")
    const r = await missive("replay", "report", "--from", "-10m", "--to", "now", "--config", configPath, "--html", html)
    expect(r.code, r.stderr).toBe(0)
    // MSGS RCPTS QUEUED@START ATTEMPTS DELIVERED DEFERRALS BOUNCED EXPIRED DELETED OPEN@END
    expect(r.stdout).toMatch(/^flaky\.test\s+1\s+1\s+0\s+3\s+1\s+2\s+0\s+0\s+0\s+0\s/m)
    expect(r.stdout).toMatch(/^picky\.test\s+2\s+3\s+0\s+2\s+2\s+0\s+1\s+0\s+0\s+0\s/m)
    expect(r.stdout).toMatch(/^down\.test\s+1\s+1\s+0\s+\d+\s+0\s+\d+\s+0\s+1\s+0\s+0\s/m)
    expect(r.stdout).toMatch(/picky\.test\s+550 5\.1\.1\s+1/)
    const page = readFileSync(html, "utf8")
    expect(page).toMatch(/<svg /)
    expect(page).not.toMatch(/<script|src=|https?:\/\//i)
    const one = await missive(
      "replay",
      "report",
      "--from",
      "-10m",
      "--to",
      "now",
      "--config",
      configPath,
      "--domain",
      "down.test",
      "--json"
    )
    expect((JSON.parse(one.stdout) as { destinations: Array<{ destination: string }> }).destinations.map((d) => d.destination)).toEqual([
      "down.test"
    ])
  })

  it("replay what-if compares the recording with a longer lifetime", async () => {
    mkdirSync(join(dir.path, "alt"), { recursive: true })
    const alt = writeConfig(join(dir.path, "alt"), {
      ...testConfig(join(dir.path, "data")),
      retry: { initial: "300ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "1h" }
    })
    const r = await missive("replay", "what-if", "--from", "-10m", "--to", "now", "--config", alt, "--json")
    expect(r.code, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout) as {
      recorded: { messages: number; expired: number; delivered: number }
      alternative: { messages: number; expired: number; queued: number }
    }
    expect(j.recorded).toMatchObject({ messages: 4, expired: 1, delivered: 3, bounced: 1 })
    expect(j.alternative).toMatchObject({ messages: 4, expired: 0 })
    expect(j.alternative.queued).toBe(1)
    const text = await missive("replay", "what-if", "--from", "-10m", "--to", "now", "--config", alt)
    expect(text.stdout).toMatch(/expired\s+1\s+0/)
  })

  it("replay inject re-sends the recorded arrivals to a target, with synthetic bodies of the recorded size", async () => {
    const r = await missive(
      "replay",
      "inject",
      "--from",
      "-10m",
      "--to",
      "now",
      "--config",
      configPath,
      "--target",
      `smtp://127.0.0.1:${target.port}`,
      "--speed",
      "50"
    )
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(/re-injected 4 message\(s\).*4 accepted/)
    expect(target.messages).toHaveLength(4)
    expect(target.messages.map((m) => [...m.to].sort().join(",")).sort()).toEqual(
      ["b@flaky.test", "nobody@picky.test,ok@picky.test", "x@down.test", "y@picky.test"].sort()
    )
    expect(target.messages.every((m) => m.raw.toString().includes("X-Missive-Replay: synthetic body"))).toBe(true)
    const bad = await missive("replay", "inject", "--from", "-10m", "--to", "now", "--config", configPath, "--target", "http://x")
    expect(bad.code).toBe(2)
    expect(existsSync(configPath)).toBe(true)
  })
})
