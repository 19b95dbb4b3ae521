// What-if is exact by construction: a live node's recorded arrivals, operator commands and remote replies (retries,
// a bounce, an expiry, a hold then release, a hold until the lifetime ends), run through what-if under the node's
// own policy, give the same decisions event for event (types, recipients, attempts, replies, which deferrals hit
// the lifetime). Times differ only by the live node's polling lag, so they are compared as delays, not instants.
import { Message } from "@missive/core"
import { EventStore, SqliteStore } from "@missive/events"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Node } from "@missive/node"
import { Replay } from "@missive/simulations"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

/** The log also holds other aggregates (the suppression list a hard bounce feeds): only message streams complete. */
const isMessageStream = (stream: string): boolean => stream.startsWith("message-")

// Attempts of "down" end about 0.1, 1.1, 2.1, 3.1 and 4.1 s after its arrival (1 s retries), plus the live node's
// polling lag, which what-if does not have: an attempt ending LIFETIME - 1 s or later has its next attempt capped by
// the lifetime. 4.9 s puts that line 0.8 s after the fourth attempt's end, so that a loaded machine's lag (CI) moves no
// attempt across it; the fifth is capped either way.
const LIFETIME = 4900
const retry = { initialMs: 1000, maxMs: 1000, multiplier: 1, jitter: 0, lifetimeMs: LIFETIME }

/**
 * An event without its instant, node and policy, and without an attempt's trace (the hops and TLS the network gave,
 * an observation what-if does not make); a deferral as its delay, or as "capped" when the lifetime bounded it.
 */
const normal = (e: Message.Event, receivedAt: number): unknown => {
  const { v: _v, at, node: _n, policy: _p, ...rest } = e
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(rest)) as Record<string, unknown>
  delete out["trace"]
  if ("dsnId" in out) out["dsnId"] = "dsn"
  if (e.type === "AttemptDeferred")
    out["nextAttemptAt"] = e.nextAttemptAt === null ? null : e.nextAttemptAt >= receivedAt + LIFETIME ? "capped" : e.nextAttemptAt - at
  return out
}

describe("what-if replays a live node's run exactly", () => {
  const dir = tempDir("missive-whatif-")
  const tries = new Map<string, number>()
  let flaky: CaptureServer, picky: CaptureServer, down: CaptureServer, later: CaptureServer, senderMx: CaptureServer
  let node: Node.RunningNode
  const ids: Record<string, string> = {}

  beforeAll(async () => {
    // 451 on the first two attempts of a message (the third is accepted); "later" refuses only each message's first attempt.
    const attemptOf = (prefix: string, raw: Buffer) => {
      const k = `${prefix}:${/Subject: (.*)/.exec(raw.toString())?.[1] ?? ""}`
      const n = (tries.get(k) ?? 0) + 1
      tries.set(k, n)
      return n
    }
    flaky = await startCapture({
      onData: (m) => (attemptOf("flaky", m.raw) <= 2 ? { code: 451, text: "4.3.2 Try again later" } : undefined)
    })
    picky = await startCapture({ onRcpt: (r) => (r.startsWith("nobody@") ? { code: 550, text: "5.1.1 No such user here" } : undefined) })
    down = await startCapture({ onRcpt: () => ({ code: 451, text: "4.7.1 Greylisted forever" }) })
    later = await startCapture({ onData: (m) => (attemptOf("later", m.raw) <= 1 ? { code: 452, text: "4.2.2 Mailbox busy" } : undefined) })
    senderMx = await startCapture()
    node = await startNode(
      testConfig(join(dir.path, "data"), {
        routes: {
          "flaky.test": `127.0.0.1:${flaky.port}`,
          "picky.test": `127.0.0.1:${picky.port}`,
          "down.test": `127.0.0.1:${down.port}`,
          "later.test": `127.0.0.1:${later.port}`,
          "sender.test": `127.0.0.1:${senderMx.port}`
        },
        relay: { relay_domains: ["flaky.test", "picky.test", "down.test", "later.test"] },
        retry: { initial: "1s", max: "1s", multiplier: 1, jitter: 0, lifetime: `${LIFETIME}ms` }
      })
    )
    const port = node.ports["smtp"]!
    const mail = async (name: string, from: string, to: Array<string>) => {
      const r = await send(port, { from, to }, rawMessage({ from, to: to[0]!, subject: name }))
      expect(r.ok, r.response).toBe(true)
      ids[name] = r.id!
    }
    await mail("flaky", "a@sender.test", ["b@flaky.test"])
    await mail("mixed", "c@sender.test", ["ok@picky.test", "nobody@picky.test"])
    await mail("down", "d@sender.test", ["x@down.test"])
    await mail("held", "e@sender.test", ["y@later.test"])
    await mail("parked", "f@sender.test", ["z@later.test"])
    // The operator holds "held" and "parked" after their first deferral; "held" is released 1.5 s later (past its
    // next attempt time), "parked" never: it expires when its lifetime ends.
    const deferredOnce = (name: string) =>
      waitFor(`${name} deferred once`, async () =>
        (await node.store.events.read(EventStore.streamOf(ids[name]!))).some((e) => e.event.type === "AttemptDeferred")
      )
    await deferredOnce("held")
    await deferredOnce("parked")
    expect(await node.host.operate(ids["held"]!, "hold", "ops")).toMatchObject({ ok: true, events: ["MessageHeld"] })
    expect(await node.host.operate(ids["parked"]!, "hold", "ops")).toMatchObject({ ok: true, events: ["MessageHeld"] })
    await new Promise((r) => setTimeout(r, 1500))
    expect(await node.host.operate(ids["held"]!, "release", "ops")).toMatchObject({ ok: true, events: ["MessageReleased"] })
    await waitFor(
      "every message and DSN completed",
      async () => {
        const all = await node.store.events.readAll(0, 100_000)
        const streams = new Set(all.map((e) => e.stream).filter(isMessageStream))
        const done = new Set(all.filter((e) => e.event.type === "MessageCompleted").map((e) => e.stream))
        return streams.size >= 8 && [...streams].every((s) => done.has(s)) && senderMx.messages.length >= 3
      },
      30_000
    )
    expect(node.host.counters()).toEqual({ emptyReads: 0, driveFailures: 0, conflicts: 0 })
    await node.stop()
  }, 60_000)

  afterAll(async () => {
    await node?.stop()
    await Promise.all([flaky, picky, down, later, senderMx].map((s) => s?.close()))
    dir.remove()
  })

  it("gives the recorded decisions and outcomes, event for event, under the recorded policy", async () => {
    const store = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    try {
      const all = await store.events.readAll(0, 100_000)
      const rec = await Replay.WhatIf.record(store.events, { from: all[0]!.event.at, to: all[all.length - 1]!.event.at })
      expect(rec.arrivals.map((a) => a.id).sort()).toEqual(Object.values(ids).sort())
      expect(rec.operations?.map((o) => o.op)).toEqual(["hold", "hold", "release"])

      const simulated = new Map<string, Array<Message.Event>>()
      const sim = Replay.WhatIf.simulate(
        rec,
        { retry, concurrencyPerDestination: 20, maxConnections: 100, hash: rec.policies[0]! },
        {
          replies: "message",
          node: "test-node",
          onEvents: (id, evs) => void simulated.set(id, [...(simulated.get(id) ?? []), ...evs])
        }
      )
      expect(sim.outcome).toMatchObject({
        messages: rec.recorded.messages,
        delivered: rec.recorded.delivered,
        bounced: rec.recorded.bounced,
        expired: rec.recorded.expired,
        queued: 0,
        attempts: rec.recorded.attempts
      })
      expect(rec.recorded).toMatchObject({ messages: 5, delivered: 3, bounced: 1, expired: 2, queued: 0 })

      for (const [name, id] of Object.entries(ids)) {
        const live = (await store.events.read(EventStore.streamOf(id))).map((e) => e.event)
        const receivedAt = live[0]!.at
        const replayed = simulated.get(id) ?? []
        expect(
          replayed.map((e) => normal(e, receivedAt)),
          name
        ).toEqual(live.map((e) => normal(e, receivedAt)))
      }
      // The scenario did what it says: retries then delivery, a bounce, an expiry at the lifetime, a hold and release.
      const types = async (name: string) => (await store.events.read(EventStore.streamOf(ids[name]!))).map((e) => e.event.type)
      expect((await types("flaky")).filter((t) => t === "AttemptDeferred")).toHaveLength(2)
      expect(await types("mixed")).toContain("RecipientBounced")
      expect(await types("down")).toContain("RecipientExpired")
      expect(await types("held")).toEqual(expect.arrayContaining(["MessageHeld", "MessageReleased", "RecipientDelivered"]))
      expect((await types("parked")).slice(-4)).toEqual(["MessageHeld", "RecipientExpired", "BounceQueued", "MessageCompleted"])
    } finally {
      await store.close()
    }
  })
})
