// The scheduler's host, driver and command handler on the memory stores: a conflict is decided again on a fresh read,
// an empty read keeps the work and is retried within seconds, carried events are appended with the first decision,
// and a held message expires when its lifetime ends. No network: a stub router and deliverer.
import { Message, type Policy } from "@missive/core"
import { BodyStore, EventStore, StoreError, Work } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import { describe, expect, it } from "vitest"
import { manualClock, seededRandom } from "../src/runtime/Clock.js"
import type { Level } from "../src/runtime/Log.js"
import * as Commands from "../src/scheduler/Commands.js"
import * as Driver from "../src/scheduler/Driver.js"
import * as Host from "../src/scheduler/Host.js"
import * as Limiter from "../src/scheduler/Limiter.js"

const T0 = 1_700_000_000_000
const retry: Policy.RetryPolicy = { initialMs: 60_000, maxMs: 600_000, multiplier: 2, jitter: 0, lifetimeMs: 3600_000 }
const client = { ip: "192.0.2.1", helo: "h", tls: false }
const received = (id: string, at = T0): Message.Event => ({
  v: 1,
  at,
  node: "n1",
  policy: "p",
  type: "MessageReceived",
  id,
  sender: "s@origin.test",
  recipients: ["r@dest.test"],
  size: 5,
  digest: BodyStore.digestOf(Buffer.from("hello")),
  client
})

const world = (o: { events?: EventStore.EventStore; reply?: { code: number; text: string } } = {}) => {
  const events = o.events ?? EventStore.makeMemory()
  const bodies = BodyStore.makeMemory()
  const work = Work.makeMemory()
  const clock = manualClock(T0)
  const logs: Array<{ level: Level; msg: string; fields?: Record<string, unknown> }> = []
  const delivered: Array<string> = []
  const injected: Array<string> = []
  let n = 0
  const deps = {
    events,
    bodies,
    work,
    clock,
    random: seededRandom(1),
    ids: { next: () => `ID${++n}` },
    log: (level: Level, msg: string, fields?: Record<string, unknown>) => void logs.push({ level, msg, fields }),
    node: "n1",
    hostname: "mx.test",
    policyHash: "p",
    retry,
    router: {
      route: async (rcpt: string) => ({
        ok: {
          rcpt,
          destination: {
            kind: "smtp" as const,
            key: "dest.test",
            hops: [{ host: "127.0.0.1", port: 25, preference: 0 }],
            via: "route" as const
          }
        }
      })
    },
    deliverer: {
      deliver: async (_d: unknown, env: { to: ReadonlyArray<string> }) => {
        delivered.push(...env.to)
        const reply = o.reply ?? { code: 250, text: "ok" }
        return { host: "127.0.0.1:25", results: env.to.map((rcpt) => ({ rcpt, reply })) }
      }
    },
    limiter: Limiter.make({ perDestination: 5, total: 10 })
  }
  const host = Host.make({ ...deps, leaseMs: 60_000, pollMs: 1000, maxActive: 10 })
  host.setInjector({
    accept: async (m) => {
      injected.push(m.id)
      return { code: 250, text: "queued" }
    }
  })
  return {
    ...deps,
    host,
    logs,
    delivered,
    injected,
    read: async (id: string) => (await events.read(EventStore.streamOf(id))).map((e) => e.event)
  }
}

describe("the command handler", () => {
  it("given a stale state, when the append meets a newer version, then it reloads and decides again", async () => {
    const events = EventStore.makeMemory()
    await events.append("message-M", 0, [received("M")])
    await events.append("message-M", 1, [{ v: 1, at: T0, node: "n1", policy: "p", type: "MessageHeld", by: "ops", reason: "x" }])
    const seen: Array<boolean> = []
    const h = await Commands.make(events).handle(
      "M",
      (s) => {
        seen.push(s.status === "active" && s.held)
        return Commands.command({ type: "Hold", ctx: { at: T0, node: "n1", policy: "p" }, by: "ops", reason: "y" })(s)
      },
      { known: Message.fold([received("M")]) }
    )
    // Decided on the stale state (not held), conflicted, decided again on the fresh one: already held, nothing to add.
    expect(seen).toEqual([false, true])
    expect(h.events).toEqual([])
    expect((await events.read("message-M")).map((e) => e.event.type)).toEqual(["MessageReceived", "MessageHeld"])
  })

  it("gives up after a bounded number of conflicts", async () => {
    const inner = EventStore.makeMemory()
    await inner.append("message-M", 0, [received("M")])
    const always: EventStore.EventStore = {
      ...inner,
      append: async (stream, expected) => {
        throw new StoreError.WrongExpectedVersion({ stream, expected, actual: expected + 1 })
      }
    }
    let tries = 0
    const run = Commands.make(always).handle("M", (s) => {
      tries++
      return Commands.command({ type: "RetryNow", ctx: { at: T0, node: "n1", policy: "p" }, by: "ops" })(s)
    })
    await expect(run).rejects.toMatchObject({ _tag: "WrongExpectedVersion" })
    expect(tries).toBe(Commands.MAX_TRIES)
  })

  it("refuses with the decider's error", async () => {
    const run = Commands.make(EventStore.makeMemory()).handle("M", (s) =>
      E.isLeft(Message.decide({ type: "RetryNow", ctx: { at: T0, node: "n", policy: "p" }, by: "x" }, s))
        ? E.left({ _tag: "MessageNotFound" as const })
        : E.right({ events: [], value: 0 })
    )
    await expect(run).rejects.toBeInstanceOf(Commands.Refused)
  })
})

describe("an empty or failed read never deletes work", () => {
  it("given a work entry whose stream reads back empty, it keeps the entry, warns, counts and retries with a backoff", async () => {
    const w = world()
    await w.work.schedule("GHOST", T0)
    await w.host.drive("GHOST")
    expect(await w.work.list(10)).toEqual([{ id: "GHOST", dueAt: T0 + 1000 }])
    await w.host.drive("GHOST")
    expect(await w.work.list(10)).toEqual([{ id: "GHOST", dueAt: T0 + 2000 }])
    expect(w.host.counters().emptyReads).toBe(2)
    expect(w.logs.filter((l) => l.level === "warn" && l.fields?.["id"] === "GHOST")).toHaveLength(2)
  })

  it("a drive that fails is rescheduled within seconds, not a minute", async () => {
    const inner = EventStore.makeMemory()
    const broken: EventStore.EventStore = {
      ...inner,
      append: async () => {
        throw new StoreError.StoreUnavailable("disk on fire")
      }
    }
    const w = world({ events: broken })
    await inner.append("message-M", 0, [received("M")])
    await w.work.schedule("M", T0)
    await w.host.drive("M")
    expect(await w.work.list(10)).toEqual([{ id: "M", dueAt: T0 + 1000 }])
    expect(w.host.counters().driveFailures).toBe(1)
    expect(Host.retryDelay(1)).toBe(1000)
    expect(Host.retryDelay(10)).toBe(5_000)
  })
})

describe("carried events", () => {
  it("given an empty stream and carried MessageReceived, the first append carries it with the first decision", async () => {
    const w = world()
    const driver = Driver.make({ ...w, commands: Commands.make(w.events), injector: () => undefined })
    await w.work.schedule("C", T0)
    expect(await driver.driveOnce("C", { carried: { events: [received("C")], body: Buffer.from("hello") } })).toBe("driven")
    const stored = await w.events.read("message-C")
    expect(stored.map((e) => e.event.type)).toEqual([
      "MessageReceived",
      "RecipientsRouted",
      "AttemptStarted",
      "AttemptSucceeded",
      "RecipientDelivered",
      "MessageCompleted"
    ])
    expect(stored[1]!.version).toBe(2)
    expect(w.delivered).toEqual(["r@dest.test"])
    expect(await w.work.count()).toBe(0)
  })

  it("when the stream turns out to exist (a read that lagged), it reloads and does not append the carried events twice", async () => {
    const inner = EventStore.makeMemory()
    await inner.append("message-C", 0, [received("C")])
    let reads = 0
    const lagging: EventStore.EventStore = { ...inner, read: async (s) => (reads++ === 0 ? [] : inner.read(s)) }
    const w = world({ events: lagging })
    await w.bodies.put(Buffer.from("hello"))
    const driver = Driver.make({ ...w, commands: Commands.make(lagging), injector: () => undefined })
    await driver.driveOnce("C", { carried: { events: [received("C")], body: Buffer.from("hello") } })
    const types = (await inner.read("message-C")).map((e) => e.event.type)
    expect(types.filter((t) => t === "MessageReceived")).toHaveLength(1)
    expect(types).toContain("RecipientDelivered")
  })

  it("without carried events an empty read is reported, not acted on", async () => {
    const w = world()
    const driver = Driver.make({ ...w, commands: Commands.make(w.events), injector: () => undefined })
    expect(await driver.driveOnce("NONE")).toBe("empty")
    expect(await w.events.head()).toBe(0)
  })
})

describe("one append per attempt", () => {
  const counting = () => {
    const inner = EventStore.makeMemory()
    const appends: Array<ReadonlyArray<string>> = []
    const events: EventStore.EventStore = {
      ...inner,
      append: async (stream, version, evs) => {
        appends.push(evs.map((e) => e.type))
        return inner.append(stream, version, evs)
      }
    }
    return { events, appends }
  }

  it("a carried message delivered at its first attempt is one append: received, route, attempt start and report", async () => {
    const { events, appends } = counting()
    const w = world({ events })
    const driver = Driver.make({ ...w, commands: Commands.make(events), injector: () => undefined })
    await driver.driveOnce("A", { carried: { events: [received("A")], body: Buffer.from("hello") }, fresh: Message.initialState })
    expect(appends).toEqual([
      ["MessageReceived", "RecipientsRouted", "AttemptStarted", "AttemptSucceeded", "RecipientDelivered", "MessageCompleted"]
    ])
  })

  it("a logged message's retry is one append, deferred again or delivered", async () => {
    const { events, appends } = counting()
    const w = world({ events, reply: { code: 451, text: "4.7.1 later" } })
    await events.append("message-R", 0, [received("R")])
    appends.length = 0
    await w.bodies.put(Buffer.from("hello"))
    await w.host.drive("R")
    expect(appends).toEqual([["RecipientsRouted", "AttemptStarted", "AttemptDeferred"]])
  })

  it("a delivery the fence refuses (lease lost) is not made, not reported, and the drive fails", async () => {
    const { events, appends } = counting()
    const w = world({ events })
    const refused = Object.assign(new Error("lease on F lost: delivery refused"), { _tag: "LeaseLost" })
    const driver = Driver.make({
      ...w,
      deliverer: { deliver: async () => Promise.reject(refused) },
      commands: Commands.make(events),
      injector: () => undefined
    })
    await expect(
      driver.driveOnce("F", { carried: { events: [received("F")], body: Buffer.from("hello") }, fresh: Message.initialState })
    ).rejects.toBe(refused)
    expect(appends).toEqual([])
  })
})

describe("a held message", () => {
  it("parks until its lifetime ends, then expires and bounces", async () => {
    const w = world({ reply: { code: 451, text: "4.7.1 later" } })
    await w.events.append("message-H", 0, [received("H")])
    await w.bodies.put(Buffer.from("hello"))
    await w.host.drive("H")
    expect((await w.read("H")).map((e) => e.type)).toContain("AttemptDeferred")
    expect(await w.host.operate("H", "hold", "ops")).toEqual({ ok: true, events: ["MessageHeld"] })
    expect(await w.work.list(10)).toEqual([{ id: "H", dueAt: T0 + retry.lifetimeMs }])
    w.clock.set(T0 + retry.lifetimeMs)
    await w.host.drive("H")
    const types = (await w.read("H")).map((e) => e.type)
    expect(types.slice(-3)).toEqual(["RecipientExpired", "BounceQueued", "MessageCompleted"])
    expect(w.injected).toHaveLength(1)
    expect(await w.work.count()).toBe(0)
  })
})
