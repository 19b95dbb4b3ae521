// `missive replay inject`: re-sends the recorded arrivals of a window to an SMTP target with their recorded timing
// (scaled by --speed), with the stored body when the BodyStore still has it (the node deletes a body when its message
// completes) and otherwise a synthetic body of the recorded size. Outbound SMTP only to the target it is given;
// DSNs the node generated itself are not traffic and are not re-sent.
import type { BodyStore } from "@missive/events"
import nodemailer from "nodemailer"
import type { Clock } from "@missive/node"
import { positionAt, scan, SLACK_MS, type Store } from "./Log.js"

export interface InjectOptions {
  readonly from: number
  readonly to: number
  readonly host: string
  readonly port: number
  /** 10 = ten times faster than recorded. */
  readonly speed: number
  readonly syntheticBodies: boolean
  /** Messages in flight at once. */
  readonly concurrency?: number
  readonly clock: Clock.Clock
  readonly sleep?: (ms: number) => Promise<void>
  readonly onProgress?: (done: number, total: number) => void
}

export interface InjectResult {
  readonly messages: number
  readonly sent: number
  readonly failed: number
  readonly storedBodies: number
  readonly syntheticBodies: number
  /** Reply code of the target → count. */
  readonly replies: Readonly<Record<string, number>>
  readonly errors: ReadonlyArray<string>
}

/** A plain-text message of exactly `size` bytes (at least its headers) that says what it stands in for. */
export const syntheticBody = (o: { id: string; sender: string; recipients: ReadonlyArray<string>; size: number }): Buffer => {
  const head = [
    `From: <${o.sender || "mailer-daemon@invalid"}>`,
    `To: ${o.recipients.map((r) => `<${r}>`).join(", ")}`,
    `Subject: Missive replay of ${o.id}`,
    `Message-ID: <replay.${o.id}@missive.invalid>`,
    `X-Missive-Replay: synthetic body, ${o.size} bytes`,
    "",
    ""
  ].join("\r\n")
  const room = Math.max(0, o.size - head.length)
  const line = "This is a synthetic body standing in for a recorded message.".padEnd(76, ".") + "\r\n"
  let body = line.repeat(Math.floor(room / line.length))
  const rest = room - body.length
  if (rest >= 2) body += "x".repeat(rest - 2) + "\r\n"
  else if (rest === 1) body += "x"
  return Buffer.from(head + body, "utf8")
}

export const inject = async (store: Store, bodies: BodyStore.BodyStore | undefined, o: InjectOptions): Promise<InjectResult> => {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))
  const head = await store.head()
  const start = Math.max(0, (await positionAt(store, o.from - SLACK_MS, head)) - 1)
  const until = Math.min(head, (await positionAt(store, o.to + SLACK_MS + 1, head)) - 1)
  const arrivals: Array<{ id: string; at: number; sender: string; recipients: ReadonlyArray<string>; size: number; digest: string }> = []
  for await (const batch of scan(store, { after: start, until }))
    for (const { event: e } of batch)
      if (e.type === "MessageReceived" && e.at >= o.from && e.at <= o.to && e.dsnOf === undefined)
        arrivals.push({ id: e.id, at: e.at, sender: e.sender, recipients: e.recipients, size: e.size, digest: e.digest })
  arrivals.sort((a, b) => a.at - b.at)
  const transport = nodemailer.createTransport({
    host: o.host,
    port: o.port,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: o.concurrency ?? 5,
    maxMessages: Infinity,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000
  })
  const replies: Record<string, number> = {}
  const errors: Array<string> = []
  let sent = 0,
    failed = 0,
    stored = 0,
    synthetic = 0,
    done = 0
  const inflight = new Set<Promise<void>>()
  const limit = o.concurrency ?? 5
  const t0 = o.clock.now()
  const first = arrivals[0]?.at ?? 0
  try {
    for (const a of arrivals) {
      const wait = t0 + (a.at - first) / o.speed - o.clock.now()
      if (wait > 0) await sleep(wait)
      while (inflight.size >= limit) await Promise.race(inflight)
      let body: Buffer | undefined
      if (!o.syntheticBodies && bodies) body = await bodies.get(a.digest).catch(() => undefined)
      if (body) stored += 1
      else {
        synthetic += 1
        body = syntheticBody(a)
      }
      const p = transport
        .sendMail({ envelope: { from: a.sender, to: [...a.recipients] }, raw: body })
        .then(
          (info) => {
            sent += 1
            const c = String(/^\d{3}/.exec(info.response)?.[0] ?? "250")
            replies[c] = (replies[c] ?? 0) + 1
          },
          (e: { responseCode?: number; message?: string }) => {
            failed += 1
            const c = String(e.responseCode ?? "error")
            replies[c] = (replies[c] ?? 0) + 1
            if (errors.length < 20) errors.push(`${a.id}: ${e.message ?? String(e)}`)
          }
        )
        .finally(() => {
          inflight.delete(p)
          done += 1
          o.onProgress?.(done, arrivals.length)
        })
      inflight.add(p)
    }
    await Promise.all(inflight)
  } finally {
    transport.close()
  }
  return { messages: arrivals.length, sent, failed, storedBodies: stored, syntheticBodies: synthetic, replies, errors }
}

export const format = (r: InjectResult, target: string): string =>
  [
    `re-injected ${r.messages} message(s) into ${target}: ${r.sent} accepted, ${r.failed} refused or failed`,
    `bodies: ${r.storedBodies} from the body store, ${r.syntheticBodies} synthetic`,
    `replies: ${
      Object.entries(r.replies)
        .map(([k, n]) => `${k} x${n}`)
        .join(", ") || "-"
    }`,
    ...r.errors.map((e) => `  ${e}`)
  ].join("\n")
