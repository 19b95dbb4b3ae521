// Where a destination's published events go: a webhook (one POST of a JSON array per batch, over kept-alive
// connections), a JSON-lines file (appended, fdatasync'd per batch) or a NATS subject (JetStream publish with acks
// when a stream covers the subject, else a plain publish and a flush). `send` resolves only once the destination
// has the whole batch (a 2xx, an fdatasync, every JetStream ack or the server's answer to a flush); it never skips.
// Security: webhook bodies are signed with HMAC-SHA256 over "<timestamp>.<body>" under the destination's secret;
// the secret is never logged. Must not read or write the log (Publisher.ts follows it).
import { createHmac } from "node:crypto"
import { mkdirSync } from "node:fs"
import { open, type FileHandle } from "node:fs/promises"
import * as http from "node:http"
import * as https from "node:https"
import { dirname } from "node:path"
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import type { Clock } from "../runtime/Clock.js"

/** A published event serialised once, with its id (the NATS sink's `Nats-Msg-Id`). */
export interface Encoded {
  readonly eventId: string
  readonly json: string
}

/** Hands a batch of published events to a destination. */
export interface Sink {
  send(events: ReadonlyArray<Encoded>, signal: AbortSignal): Promise<void>
  close(): Promise<void>
}

/** The signature header's value for a body sent at `timestamp` (unix seconds): "sha256=<hex>" over "<timestamp>.<body>". */
export const sign = (secret: string, timestamp: string, body: string | Buffer): string =>
  `sha256=${createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex")}`

export const SIGNATURE_HEADER = "x-missive-signature"
export const TIMESTAMP_HEADER = "x-missive-timestamp"
export const COUNT_HEADER = "x-missive-event-count"

/** How long a webhook has to answer a batch before it counts as failed (and is sent again). */
const WEBHOOK_TIMEOUT_MS = 10_000

/**
 * A webhook: each batch is one POST of a JSON array. One kept-alive connection (an Agent with `maxSockets: 1`:
 * batches go in order, one at a time), destroyed at close. The body is encoded once (the signature, the length and
 * the socket all take the same bytes).
 */
export const webhook = (url: string, secret: string, clock: Clock): Sink => {
  const target = new URL(url)
  const client = target.protocol === "https:" ? https : http
  const agent = new client.Agent({ keepAlive: true, maxSockets: 1 })
  // The URL taken apart once (a URL given to request() is converted to these on every call).
  const where = {
    protocol: target.protocol,
    hostname: target.hostname.replace(/^\[|\]$/g, ""),
    port: target.port === "" ? undefined : Number(target.port),
    path: `${target.pathname}${target.search}`,
    ...(target.username !== "" ? { auth: `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}` } : {})
  }
  const post = (body: Buffer, count: number, signal: AbortSignal) =>
    new Promise<number>((done, fail) => {
      const timestamp = String(Math.floor(clock.now() / 1000))
      const req = client.request(
        {
          ...where,
          method: "POST",
          agent,
          headers: {
            "content-type": "application/json",
            "content-length": body.length,
            "user-agent": "Missive-Events/2",
            [COUNT_HEADER]: String(count),
            [TIMESTAMP_HEADER]: timestamp,
            [SIGNATURE_HEADER]: sign(secret, timestamp, body)
          },
          signal
        },
        (res) => {
          // The answer's body is read and dropped so that the connection goes back to the agent.
          res.resume()
          res.on("end", () => {
            clearTimeout(timer)
            done(res.statusCode ?? 0)
          })
          res.on("error", failed)
        }
      )
      // One timer per request (AbortSignal.timeout + AbortSignal.any cost more, and their timers outlive the request).
      const timer = setTimeout(() => req.destroy(new Error(`webhook did not answer within ${WEBHOOK_TIMEOUT_MS} ms`)), WEBHOOK_TIMEOUT_MS)
      function failed(e: unknown) {
        clearTimeout(timer)
        fail(e)
      }
      req.on("error", failed)
      req.end(body)
    })
  return {
    send: async (events, signal) => {
      const status = await post(Buffer.from(`[${events.map((e) => e.json).join(",")}]`), events.length, signal)
      if (status < 200 || status >= 300) throw new Error(`webhook answered ${status} for a batch of ${events.length} events`)
    },
    close: async () => agent.destroy()
  }
}

/** A JSON-lines file, opened at the first batch. */
export const file = (path: string): Sink => {
  let handle: FileHandle | undefined
  return {
    send: async (events) => {
      if (!handle) {
        mkdirSync(dirname(path), { recursive: true })
        handle = await open(path, "a")
      }
      await handle.write(events.map((e) => `${e.json}\n`).join(""))
      await handle.datasync()
    },
    close: async () => {
      await handle?.close()
      handle = undefined
    }
  }
}

/**
 * A NATS subject, one event per NATS message with its `eventId` as `Nats-Msg-Id` (a stream's duplicate window drops
 * the copies a restart sends again). On `url` (own connection, closed at close) or on `shared` (the cluster's).
 * Whether a stream covers the subject is asked at the first batch and again after a failure.
 */
export const natsSubject = (subject: string, conn: { readonly url: string } | { readonly shared: NatsConnection }, name: string): Sink => {
  let nc: NatsConnection | undefined = "shared" in conn ? conn.shared : undefined
  let js: JetStreamClient | null | undefined
  const encoder = new TextEncoder()
  const connection = async (): Promise<NatsConnection> => {
    nc ??= await connect({ servers: "url" in conn ? conn.url : [], name: `missive-events-${name}`, maxReconnectAttempts: -1 })
    return nc
  }
  /** A JetStream client when a stream covers the subject, null when none does. */
  const mode = async (c: NatsConnection): Promise<JetStreamClient | null> => {
    if (js !== undefined) return js
    const jsm = await jetstreamManager(c, { checkAPI: false }).catch(() => undefined)
    const stream = jsm ? await jsm.streams.find(subject).catch(() => undefined) : undefined
    js = stream ? jetstream(c) : null
    return js
  }
  return {
    send: async (events) => {
      const c = await connection()
      try {
        const client = await mode(c)
        if (client) {
          const acks = events.map((e) => client.publish(subject, encoder.encode(e.json), { msgID: e.eventId }))
          await Promise.all(acks)
        } else {
          for (const e of events) c.publish(subject, encoder.encode(e.json))
          await c.flush()
        }
      } catch (e) {
        js = undefined
        throw e
      }
    },
    close: async () => {
      if ("url" in conn) await nc?.close()
      nc = undefined
    }
  }
}
