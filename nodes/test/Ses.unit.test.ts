// The SES projection on a memory event log: which delivery events a message's events give, with SES's bounce and
// delay classifications, stable ids (the log position), a DeliveryDelay only at a recipient's first deferral (also
// when the projector starts cold, after a restart), and the filter stage's rejections and quarantines.
import { EventStore } from "@missive/events"
import type { Message } from "@missive/core"
import { describe, expect, it } from "vitest"
import * as Ses from "../src/publish/Ses.js"

const T0 = 1_796_000_000_000
const meta = (at: number) => ({ v: 1, at, node: "n1", policy: "p" })
const received = (id: string): Message.Event => ({
  ...meta(T0),
  type: "MessageReceived",
  id,
  sender: "app@example.org",
  recipients: ["a@x.test", "b@x.test"],
  size: 10,
  digest: "d",
  client: { ip: "192.0.2.1", helo: "h", tls: true, user: "app" }
})
const deferred = (at: number, rcpts: ReadonlyArray<string>): Message.Event => ({
  ...meta(at),
  type: "AttemptDeferred",
  attempt: 1,
  rcpts,
  host: "mx.x.test:25",
  reply: { code: 452, enhanced: "4.2.2", text: "Mailbox full" },
  nextAttemptAt: at + 60_000
})

describe("Ses projection", () => {
  it("classifies bounces and delays as SES does", () => {
    expect(Ses.bounceOf({ code: 550, enhanced: "5.1.1", text: "User unknown" })).toEqual({
      bounceType: "Permanent",
      bounceSubType: "NoEmail"
    })
    expect(Ses.bounceOf({ code: 552, enhanced: "5.2.2", text: "Mailbox full" })).toEqual({
      bounceType: "Transient",
      bounceSubType: "MailboxFull"
    })
    expect(Ses.bounceOf({ code: 550, enhanced: "5.7.1", text: "Spam" })).toEqual({
      bounceType: "Transient",
      bounceSubType: "ContentRejected"
    })
    expect(Ses.bounceOf({ code: 550, enhanced: "4.4.7", text: "Message expired" })).toEqual({
      bounceType: "Transient",
      bounceSubType: "General"
    })
    expect(Ses.bounceOf({ code: 554, enhanced: "5.0.0", text: "Rejected" })).toEqual({ bounceType: "Permanent", bounceSubType: "General" })
    expect(Ses.bounceOf({ code: 451, text: "later" })).toEqual({ bounceType: "Transient", bounceSubType: "General" })
    expect(Ses.bounceOf({ code: 550, enhanced: "5.1.1", text: "Recipient address suppressed (bounce)" }).bounceSubType).toBe("Suppressed")
    expect(Ses.isHardBounce({ code: 550, enhanced: "5.1.1", text: "Recipient address suppressed (bounce)" })).toBe(false)
    expect(Ses.isHardBounce({ code: 554, enhanced: "5.0.0", text: "No" })).toBe(true)
    expect(Ses.delayTypeOf({ code: 451, enhanced: "4.4.1", text: "Connection failed" }, "unknown")).toBe("TransientCommunicationFailure")
    expect(Ses.delayTypeOf({ code: 451, enhanced: "4.4.3", text: "DNS" }, "dns")).toBe("Undetermined")
    expect(Ses.delayTypeOf({ code: 450, enhanced: "4.7.1", text: "Greylisted" }, "mx:25")).toBe("IPFailure")
  })

  it("projects a message's events with stable ids, and a DeliveryDelay once per recipient even from a cold start", async () => {
    const log = EventStore.makeMemory()
    await log.append("message-M1", 0, [received("M1"), deferred(T0 + 10, ["a@x.test"])])
    await log.append("message-M1", 2, [deferred(T0 + 20, ["a@x.test", "b@x.test"])])
    await log.append("message-M1", 3, [
      { ...meta(T0 + 30), type: "RecipientDelivered", rcpt: "a@x.test", host: "192.0.2.9:25", reply: { code: 250, text: "ok" } },
      { ...meta(T0 + 31), type: "RecipientBounced", rcpt: "b@x.test", reply: { code: 550, enhanced: "5.1.1", text: "unknown" } }
    ])
    const all = await log.readAll(0, 100)
    const items = await Ses.make(log, "mx.missive.test", 3_600_000).project(all)
    expect(items.map((i) => [i.event.eventId, i.event.eventType])).toEqual([
      ["1", "Send"],
      ["2", "DeliveryDelay"],
      ["2.1", "Deferred"],
      ["3", "DeliveryDelay"],
      ["3.1", "Deferred"],
      ["4", "Delivery"],
      ["5", "Bounce"]
    ])
    expect(items[3]!.event["deliveryDelay"]).toMatchObject({ delayType: "MailboxFull", delayedRecipients: [{ emailAddress: "b@x.test" }] })
    expect(items[0]!.event.mail).toEqual({
      timestamp: new Date(T0).toISOString(),
      messageId: "M1",
      source: "app@example.org",
      destination: ["a@x.test", "b@x.test"],
      sendingAccountId: "app",
      sourceIp: "192.0.2.1"
    })
    // A projector that starts after the first deferral (a restart at the checkpoint) reads what came before.
    const cold = await Ses.make(log, "mx.missive.test", 3_600_000).project(all.slice(2))
    expect(cold.map((i) => [i.event.eventId, i.event.eventType])).toEqual([
      ["3", "DeliveryDelay"],
      ["3.1", "Deferred"],
      ["4", "Delivery"],
      ["5", "Bounce"]
    ])
  })

  it("gives each event of one append (a cluster's: one JetStream position) its own id, the same whatever types were handed", async () => {
    const log = EventStore.makeMemory()
    const evs: ReadonlyArray<Message.Event> = [
      received("M9"),
      { ...meta(T0 + 1), type: "MessageHeld", by: "op", reason: "look" },
      deferred(T0 + 2, ["a@x.test"]),
      { ...meta(T0 + 3), type: "RecipientDelivered", rcpt: "a@x.test", host: "192.0.2.9:25", reply: { code: 250, text: "ok" } },
      { ...meta(T0 + 4), type: "RecipientExpired", rcpt: "b@x.test", reply: { code: 451, enhanced: "4.4.7", text: "expired" } }
    ]
    // As JetStreamEventStore stores them: one append, one position for all its events.
    const batch = evs.map((event, i) => ({ stream: "message-M9", version: i + 1, position: 7, event }))
    const ids = (items: ReadonlyArray<Ses.Item>) => items.map((i) => [i.event.eventId, i.event.eventType])
    const all = await Ses.make(log, "mx.missive.test", 3_600_000).project(batch)
    expect(ids(all)).toEqual([
      ["7", "Send"],
      ["7:1", "DeliveryDelay"],
      ["7:1.1", "Deferred"],
      ["7:2", "Delivery"],
      ["7:3", "Bounce"],
      ["7:3.1", "Expired"]
    ])
    const only = batch.filter((e) => (Ses.SOURCE_TYPES as ReadonlyArray<string>).includes(e.event.type))
    expect(ids(await Ses.make(log, "mx.missive.test", 3_600_000).project(only))).toEqual(ids(all))
  })

  it("forgets a message once every recipient has an outcome, and projects its later events the same from the stream", async () => {
    const log = EventStore.makeMemory()
    let reads = 0
    const counted: EventStore.EventStore = { ...log, read: (s) => (reads++, log.read(s)) }
    await log.append("message-M1", 0, [received("M1"), deferred(T0 + 10, ["a@x.test"])])
    await log.append("message-M1", 2, [
      { ...meta(T0 + 30), type: "RecipientDelivered", rcpt: "a@x.test", host: "192.0.2.9:25", reply: { code: 250, text: "ok" } }
    ])
    await log.append("message-M1", 3, [
      { ...meta(T0 + 31), type: "RecipientBounced", rcpt: "b@x.test", reply: { code: 550, enhanced: "5.1.1", text: "unknown" } }
    ])
    const all = await log.readAll(0, 100)
    const projector = Ses.make(counted, "mx.missive.test", 3_600_000)
    const first = await projector.project(all)
    expect(first.map((i) => i.event.eventType)).toEqual(["Send", "DeliveryDelay", "Deferred", "Delivery", "Bounce"])
    expect(reads).toBe(0)
    // The same events handed again (a batch the destination refused): b@ was the last recipient, so M1 is read back.
    const again = await projector.project(all.slice(1))
    expect(reads).toBe(1)
    expect(again).toEqual(first.slice(1))
  })

  it("encodes each event exactly as JSON.stringify does, the mail part cached per message", async () => {
    const log = EventStore.makeMemory()
    await log.append("message-M1", 0, [received("M1"), deferred(T0 + 10, ["a@x.test"])])
    await log.append("message-M1", 2, [
      { ...meta(T0 + 30), type: "RecipientDelivered", rcpt: "a@x.test", host: "192.0.2.9:25", reply: { code: 250, text: 'ok "quoted" é' } },
      { ...meta(T0 + 31), type: "RecipientBounced", rcpt: "b@x.test", reply: { code: 550, enhanced: "5.1.1", text: "unknown" } },
      { ...meta(T0 + 32), type: "RecipientExpired", rcpt: "b@x.test", reply: { code: 451, enhanced: "4.4.7", text: "expired" } }
    ])
    await log.append("message-M2", 0, [
      {
        ...meta(T0),
        type: "MessageFiltered",
        id: "M2",
        action: "reject",
        verdicts: [{ name: "clamav", stage: "data", result: "virus", action: "reject" }],
        rewrites: [],
        filterPolicy: "f",
        reply: { code: 554, enhanced: "5.7.1", text: "Virus found" }
      }
    ])
    const projector = Ses.make(log, "mx.missive.test", 3_600_000)
    const items = await projector.project(await log.readAll(0, 100))
    expect(new Set(items.map((i) => i.kind))).toEqual(
      new Set(["send", "deliveryDelay", "deferred", "delivery", "bounce", "expired", "reject"])
    )
    for (const i of items) expect(projector.encode(i)).toBe(JSON.stringify(i.event))
    // Twice: the second time from the cached mail part.
    for (const i of items) expect(projector.encode(i)).toBe(JSON.stringify(i.event))
  })

  it("projects the filter stage's rejection and quarantine", async () => {
    const log = EventStore.makeMemory()
    const filtered = (action: "reject" | "quarantine", id = "M2"): Message.EventOf<"MessageFiltered"> => ({
      ...meta(T0),
      type: "MessageFiltered",
      id,
      action,
      verdicts: [{ name: "clamav", stage: "data", result: "virus", action }],
      rewrites: [],
      filterPolicy: "f",
      ...(action === "reject" ? { reply: { code: 554, enhanced: "5.7.1", text: "Virus found" } } : {})
    })
    await log.append("message-M2", 0, [filtered("reject")])
    await log.append("message-M3", 0, [received("M3"), filtered("quarantine", "M3")])
    const items = await Ses.make(log, "mx.missive.test", 3_600_000).project(await log.readAll(0, 100))
    expect(items.map((i) => i.event.eventType)).toEqual(["Reject", "Send", "Quarantined"])
    expect(items[0]!.event["reject"]).toMatchObject({ reason: "clamav=virus", reply: "554 5.7.1 Virus found" })
    expect(items[2]!.event.mail.source).toBe("app@example.org")
  })
})
