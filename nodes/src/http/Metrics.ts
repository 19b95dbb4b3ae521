// Prometheus metrics (GET /metrics, text format 0.0.4) through prom-client, one registry per node (never the
// library's global one: nodes may share a process). Counters and queue gauges are read from the View at scrape
// time (the event log is their source); what is not an event — connections, store commits, JetStream calls — is
// observed where it happens through the hooks below. Must not keep a second count of anything the View counts.
import type { EventStore } from "@missive/events"
import { Counter, Gauge, Histogram, Registry } from "prom-client"
import type { Clock } from "../runtime/Clock.js"
import type { View } from "./View.js"

export interface Metrics {
  /** Text exposition and its content type. */
  render(): Promise<{ readonly text: string; readonly contentType: string }>
  /** An SMTP session opened or closed on a listener ("in"), or an outbound connection opened ("out"). */
  connection(direction: "in" | "out", change: "open" | "close"): void
  /** One commit of the store: how long it took and how many writes it carried. */
  commit(ms: number, writes: number): void
  /** One JetStream call of the cluster runtime, by operation, with its latency. */
  jetstream(op: string, ms: number, ok: boolean): void
}

const labelled = <T extends string>(r: Registry, name: string, help: string, labelNames: ReadonlyArray<T>) =>
  new Counter({ name, help, labelNames, registers: [r] })

export const make = (view: View, clock: Clock): Metrics => {
  const r = new Registry()
  const outcomes = {
    delivered: labelled(r, "missive_delivered_total", "Recipients delivered by this node, by destination", ["destination"]),
    deferred: labelled(r, "missive_deferred_total", "Recipients deferred (4xx or no answer) by this node, by destination", ["destination"]),
    bounced: labelled(r, "missive_bounced_total", "Recipients bounced by this node, by destination", ["destination"]),
    expired: labelled(r, "missive_expired_total", "Recipients expired (lifetime ran out) on this node, by destination", ["destination"])
  }
  const received = new Counter({ name: "missive_received_total", help: "Messages accepted by this node (SMTP and HTTP)", registers: [r] })
  const attempts = labelled(r, "missive_attempts_total", "Delivery attempts ended by this node, by destination and reply class", [
    "destination",
    "class"
  ])
  const events = labelled(r, "missive_events_total", "Events appended to the log since this node started (all nodes), by type", ["type"])
  // Counters are views: at each scrape they are set from the View's counts (reset, then incremented to the value).
  const refresh = () => {
    const c = view.counts()
    received.reset()
    received.inc(c.received)
    for (const k of Object.keys(outcomes) as Array<keyof typeof outcomes>) outcomes[k].reset()
    for (const [destination, o] of c.outcomes)
      for (const k of Object.keys(outcomes) as Array<keyof typeof outcomes>) if (o[k] > 0) outcomes[k].inc({ destination }, o[k])
    attempts.reset()
    for (const [destination, byClass] of c.attempts) for (const [cls, n] of byClass) attempts.inc({ destination, class: cls }, n)
    events.reset()
    for (const [type, n] of c.events) events.inc({ type }, n)
  }
  const depth = new Gauge({
    name: "missive_queue_messages",
    help: "Queued messages with a recipient still to deliver to the destination (unrouted: not attempted yet)",
    labelNames: ["destination"],
    registers: [r]
  })
  const oldest = new Gauge({
    name: "missive_queue_oldest_age_seconds",
    help: "Age of the oldest queued message per destination, seconds",
    labelNames: ["destination"],
    registers: [r]
  })
  const held = new Gauge({ name: "missive_queue_held_messages", help: "Queued messages on hold", registers: [r] })
  const queue = () => {
    const now = clock.now()
    depth.reset()
    oldest.reset()
    for (const q of view.depth()) {
      depth.set({ destination: q.destination }, q.messages)
      oldest.set({ destination: q.destination }, Math.max(0, (now - q.oldestAt) / 1000))
    }
    held.set(view.held())
  }
  const connections = labelled(r, "missive_connections_total", "Connections opened: in = SMTP sessions, out = SMTP/LMTP connections", [
    "direction"
  ])
  const open = new Gauge({
    name: "missive_connections_open",
    help: "SMTP sessions open now (in)",
    labelNames: ["direction"],
    registers: [r]
  })
  open.set({ direction: "in" }, 0)
  connections.inc({ direction: "in" }, 0)
  connections.inc({ direction: "out" }, 0)
  const commitSeconds = new Histogram({
    name: "missive_store_commit_seconds",
    help: "Store commit latency (one group commit: fsync included), seconds",
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [r]
  })
  const groupSize = new Histogram({
    name: "missive_store_commit_writes",
    help: "Writes per store commit (the group commit's size)",
    buckets: [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [r]
  })
  const js = new Histogram({
    name: "missive_jetstream_seconds",
    help: "JetStream operations of this node (cluster mode), by operation and result, seconds",
    labelNames: ["op", "result"],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [r]
  })
  return {
    render: async () => {
      refresh()
      queue()
      return { text: await r.metrics(), contentType: r.contentType }
    },
    connection: (direction, change) => {
      if (change === "open") connections.inc({ direction })
      if (direction === "in") open.inc({ direction }, change === "open" ? 1 : -1)
    },
    commit: (ms, writes) => {
      commitSeconds.observe(ms / 1000)
      groupSize.observe(writes)
    },
    jetstream: (op, ms, ok) => js.observe({ op, result: ok ? "ok" : "error" }, ms / 1000)
  }
}

/** `f` with its latency and outcome observed as a JetStream operation `op` (measured with performance.now(), nothing decided on it). */
export const timed =
  <A extends ReadonlyArray<unknown>, R>(op: string, f: (...args: A) => Promise<R>, m: Metrics) =>
  async (...args: A): Promise<R> => {
    const began = performance.now()
    try {
      const r = await f(...args)
      m.jetstream(op, performance.now() - began, true)
      return r
    } catch (e) {
      m.jetstream(op, performance.now() - began, false)
      throw e
    }
  }

/** The cluster's event log with its appends and reads observed (cluster mode only: there they are JetStream calls). */
export const timedEvents = (events: EventStore.EventStore, m: Metrics): EventStore.EventStore => ({
  ...events,
  append: timed("append", events.append, m),
  read: timed("read", events.read, m)
})
