// The event publisher: one follower of the event log per configured destination (events.destinations), each with
// its own checkpoint in <data_dir>/publish/<name>.checkpoint, projecting the log into SES-style delivery events
// (Ses.ts) and handing them in batches to a webhook, a JSON-lines file or a NATS subject (Sink.ts). At-least-once:
// the checkpoint moves only past what the destination acknowledged for a whole batch (a 2xx, an fdatasync, the
// JetStream acks); a failure is retried with a backoff, never skipped. Must not change the log.
import { join } from "node:path"
import type { EventStore } from "@missive/events"
import type { NatsConnection } from "@nats-io/transport-node"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Follower from "./Follower.js"
import * as Ses from "./Ses.js"
import * as Sink from "./Sink.js"

export type Destination = Config["events"]["destinations"][number]

export { sign, SIGNATURE_HEADER, TIMESTAMP_HEADER, COUNT_HEADER } from "./Sink.js"

/** Log events read at a time: about ten per message, so one read gives a few hundred published events. */
const READ_BATCH = 2048

/**
 * Shortest time between two checkpoint writes. A crash (kill -9, power loss) sends again what the destinations
 * acknowledged since the last write: at most this long's events, plus the batch in flight. A clean stop writes the
 * last position: nothing is sent twice.
 */
const SAVE_EVERY_MS = 1000

export interface PublisherDeps {
  readonly events: EventStore.EventStore
  readonly dataDir: string
  readonly destinations: ReadonlyArray<Destination>
  readonly hostname: string
  readonly lifetimeMs: number
  readonly clock: Clock
  readonly log: Logger
  /** The cluster's NATS connection (cluster mode): a `nats_subject` destination without `url` publishes on it. */
  readonly nats?: NatsConnection | undefined
}

export interface Publisher {
  /** Log position each destination has finished, by name. */
  positions(): Readonly<Record<string, number>>
  stop(): Promise<void>
}

export const checkpointPath = (dataDir: string, name: string): string => join(dataDir, "publish", `${name}.checkpoint`)

const sinkOf = (d: Destination, deps: PublisherDeps): Sink.Sink => {
  if (d.webhook !== null && d.secret !== null) return Sink.webhook(d.webhook, d.secret, deps.clock)
  if (d.file !== null) return Sink.file(d.file)
  const subject = d.nats_subject!
  if (d.url !== null) return Sink.natsSubject(subject, { url: d.url }, d.name)
  if (deps.nats) return Sink.natsSubject(subject, { shared: deps.nats }, d.name)
  throw new Error(`events destination ${JSON.stringify(d.name)}: nats_subject needs a url when the node is not in a cluster`)
}

export const start = async (deps: PublisherDeps): Promise<Publisher> => {
  const running: Array<{ name: string; follower: Follower.Follower; sink: Sink.Sink }> = []
  // Every sink is made (and a destination that cannot be served refused) before any follower starts.
  const sinks = deps.destinations.map((d) => ({ d, sink: sinkOf(d, deps) }))
  for (const { d, sink } of sinks) {
    const projector = Ses.make(deps.events, deps.hostname, deps.lifetimeMs)
    const wanted = new Set<string>(d.types)
    const follower = await Follower.start({
      name: `events:${d.name}`,
      events: deps.events,
      checkpoint: Follower.fileCheckpoint(checkpointPath(deps.dataDir, d.name)),
      log: deps.log,
      batchSize: READ_BATCH,
      saveEveryMs: SAVE_EVERY_MS,
      lingerMs: d.batch_wait,
      // About one published event per log event of these types: a busy log gives POSTs of batch_max events.
      lingerUntil: d.batch_max,
      types: Ses.SOURCE_TYPES,
      handle: async (batch, done, signal) => {
        const items = (await projector.project(batch)).filter((i) => wanted.has(i.kind))
        for (let i = 0; i < items.length; i += d.batch_max) {
          const chunk = items.slice(i, i + d.batch_max)
          await sink.send(
            chunk.map((c) => ({ eventId: c.event.eventId, json: projector.encode(c) })),
            signal
          )
          // Events of one log position may straddle chunks: only positions wholly sent are finished.
          const next = items[i + d.batch_max]
          const last = chunk[chunk.length - 1]!.position
          done(next !== undefined && next.position === last ? last - 1 : last)
        }
      }
    })
    running.push({ name: d.name, follower, sink })
    deps.log("info", "events publisher started", { destination: d.name, from: follower.position(), types: d.types })
  }
  return {
    positions: () => Object.fromEntries(running.map((r) => [r.name, r.follower.position()])),
    stop: async () => {
      for (const r of running) {
        await r.follower.stop()
        await r.sink.close()
      }
    }
  }
}
