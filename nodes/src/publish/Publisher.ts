// The event publisher: one follower of the event log per configured destination (events.destinations), each with
// its own checkpoint in <data_dir>/publish/<name>.checkpoint, projecting the log into SES-style delivery events
// (Ses.ts) and handing them to a webhook or a JSON-lines file. At-least-once: the checkpoint moves only past what the
// destination acknowledged (a 2xx, an fdatasync); a failure is retried with a backoff, never skipped.
// Security: webhook bodies are signed with HMAC-SHA256 over "<timestamp>.<body>" under the destination's secret;
// the secret is never logged. Must not change the log.
import { createHmac } from "node:crypto"
import { mkdirSync } from "node:fs"
import { open, type FileHandle } from "node:fs/promises"
import { dirname, join } from "node:path"
import type { EventStore } from "@missive/events"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Follower from "./Follower.js"
import * as Ses from "./Ses.js"

export type Destination = Config["events"]["destinations"][number]

/** The signature header's value for a body sent at `timestamp` (unix seconds): "sha256=<hex>". */
export const sign = (secret: string, timestamp: string, body: string): string =>
  `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`

export const SIGNATURE_HEADER = "x-missive-signature"
export const TIMESTAMP_HEADER = "x-missive-timestamp"

/** Hands a chunk of published events to a destination; resolves once the destination has them. */
type Sink = { send(events: ReadonlyArray<Ses.Published>, signal: AbortSignal): Promise<void>; close(): Promise<void> }

/** How many events one webhook request or file write carries at most; a request body is one event, or an array. */
const CHUNK = 100

const webhookSink = (d: Destination & { webhook: string; secret: string }, clock: Clock): Sink => ({
  send: async (events, signal) => {
    for (const e of events) {
      const body = JSON.stringify(e)
      const timestamp = String(Math.floor(clock.now() / 1000))
      const res = await fetch(d.webhook, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "Missive-Events/1",
          "x-missive-event-id": e.eventId,
          "x-missive-event-type": e.eventType,
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: sign(d.secret, timestamp, body)
        },
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)])
      })
      // The body is read (and dropped) so the connection goes back to the pool.
      await res.arrayBuffer().catch(() => undefined)
      if (res.status < 200 || res.status >= 300) throw new Error(`webhook answered ${res.status} for event ${e.eventId}`)
    }
  },
  close: async () => {}
})

const fileSink = (path: string): Sink => {
  let handle: FileHandle | undefined
  return {
    send: async (events) => {
      if (!handle) {
        mkdirSync(dirname(path), { recursive: true })
        handle = await open(path, "a")
      }
      await handle.write(events.map((e) => JSON.stringify(e) + "\n").join(""))
      await handle.datasync()
    },
    close: async () => {
      await handle?.close()
      handle = undefined
    }
  }
}

export interface PublisherDeps {
  readonly events: EventStore.EventStore
  readonly dataDir: string
  readonly destinations: ReadonlyArray<Destination>
  readonly hostname: string
  readonly lifetimeMs: number
  readonly clock: Clock
  readonly log: Logger
}

export interface Publisher {
  /** Log position each destination has finished, by name. */
  positions(): Readonly<Record<string, number>>
  stop(): Promise<void>
}

export const checkpointPath = (dataDir: string, name: string): string => join(dataDir, "publish", `${name}.checkpoint`)

const sinkOf = (d: Destination, deps: PublisherDeps): Sink =>
  d.webhook !== null && d.secret !== null ? webhookSink({ ...d, webhook: d.webhook, secret: d.secret }, deps.clock) : fileSink(d.file!)

export const start = async (deps: PublisherDeps): Promise<Publisher> => {
  const running: Array<{ name: string; follower: Follower.Follower; sink: Sink }> = []
  for (const d of deps.destinations) {
    const sink = sinkOf(d, deps)
    const projector = Ses.make(deps.events, deps.hostname, deps.lifetimeMs)
    const wanted = new Set<string>(d.types)
    const follower = await Follower.start({
      name: `events:${d.name}`,
      events: deps.events,
      checkpoint: Follower.fileCheckpoint(checkpointPath(deps.dataDir, d.name)),
      log: deps.log,
      handle: async (batch, done, signal) => {
        const items = (await projector.project(batch)).filter((i) => wanted.has(i.kind))
        for (let i = 0; i < items.length; i += CHUNK) {
          const chunk = items.slice(i, i + CHUNK)
          await sink.send(
            chunk.map((c) => c.event),
            signal
          )
          // Events of one log position may straddle chunks: only positions wholly sent are finished.
          const next = items[i + CHUNK]
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
