// The ClamAV client: one message scanned by clamd over TCP with the INSTREAM command (chunks of a 4-byte big-endian
// length and data, ended by a zero length), its one-line reply read up to the NUL. It only scans and classifies the
// reply; what the session answers (554 5.7.0 for a virus, 451 or accept-and-tag when clamd fails) is decided by the
// caller from the outcome. Security: a clamd that never answers, answers garbage, answers without end or closes
// mid-reply ends the scan with a Failed outcome within `timeoutMs`; nothing it says reaches a reply unsanitised.
import { connect, type Socket } from "node:net"
import type { Filter } from "./Filter.js"
import * as Header from "./Header.js"
import * as Scan from "./Scan.js"

export interface ClamdOptions {
  readonly host: string
  readonly port: number
  /** The whole scan (connect, send, reply) must finish within this. */
  readonly timeoutMs: number
  /** Bytes per INSTREAM chunk. */
  readonly chunkSize?: number | undefined
  /** Messages larger than this are not sent (clamd would refuse them past its StreamMaxLength): outcome Skipped. */
  readonly maxSize: number
}

export type ClamdOutcome =
  | { readonly _tag: "Clean"; readonly reply: string }
  | { readonly _tag: "Infected"; readonly signature: string; readonly reply: string }
  | { readonly _tag: "Skipped"; readonly reason: "too-big"; readonly size: number }
  | { readonly _tag: "Failed"; readonly reason: ClamdFailure; readonly detail: string }

export type ClamdFailure = "connect" | "timeout" | "closed" | "garbage" | "error"

/** A reply line is short: anything longer is not clamd speaking. */
const MAX_REPLY = 4096
const DEFAULT_CHUNK = 64 * 1024

/** Printable ASCII only, so a scanner's words can go into a log line or an SMTP reply. */
export const printable = (s: string, max = 200): string =>
  s
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim()
    .slice(0, max)

/** Classifies clamd's INSTREAM reply ("stream: OK", "stream: Eicar-Signature FOUND", "... ERROR"). */
export const classify = (reply: string): ClamdOutcome => {
  const line = reply.replace(/\0$/, "").trim()
  const found = /^(?:stream|\d+): (.+) FOUND$/.exec(line)
  if (found) return { _tag: "Infected", signature: printable(found[1]!, 100), reply: printable(line) }
  if (/^(?:stream|\d+): OK$/.test(line)) return { _tag: "Clean", reply: line }
  if (/ ERROR$/.test(line)) return { _tag: "Failed", reason: "error", detail: printable(line) }
  return { _tag: "Failed", reason: "garbage", detail: `unexpected reply: ${JSON.stringify(printable(line, 80))}` }
}

/** Scans one message. Never rejects: every failure is an outcome. */
export const scan = (opts: ClamdOptions, body: Buffer): Promise<ClamdOutcome> => {
  if (body.length > opts.maxSize) return Promise.resolve({ _tag: "Skipped", reason: "too-big", size: body.length })
  const chunk = opts.chunkSize ?? DEFAULT_CHUNK
  return new Promise<ClamdOutcome>((resolve) => {
    let settled = false
    let connected = false
    let reply = Buffer.alloc(0)
    const socket: Socket = connect({ host: opts.host, port: opts.port })
    const done = (o: ClamdOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(o)
    }
    const timer = setTimeout(
      () => done({ _tag: "Failed", reason: "timeout", detail: `no complete reply within ${opts.timeoutMs} ms` }),
      opts.timeoutMs
    )
    socket.once("connect", () => {
      connected = true
      socket.write("zINSTREAM\0")
      for (let at = 0; at < body.length; at += chunk) {
        const part = body.subarray(at, Math.min(at + chunk, body.length))
        const len = Buffer.alloc(4)
        len.writeUInt32BE(part.length)
        socket.write(len)
        socket.write(part)
      }
      socket.write(Buffer.alloc(4))
    })
    socket.on("data", (b: Buffer) => {
      reply = Buffer.concat([reply, b])
      const nul = reply.indexOf(0)
      if (nul >= 0) return done(classify(reply.subarray(0, nul).toString("latin1")))
      if (reply.length > MAX_REPLY)
        done({ _tag: "Failed", reason: "garbage", detail: `a reply of more than ${MAX_REPLY} bytes without its end` })
    })
    socket.once("end", () =>
      done({
        _tag: "Failed",
        reason: reply.length === 0 ? "closed" : "garbage",
        detail:
          reply.length === 0
            ? "closed without a reply"
            : `closed mid-reply after ${JSON.stringify(printable(reply.toString("latin1"), 80))}`
      })
    )
    // clamd closes its side when the stream exceeds StreamMaxLength after writing its reply: a write error then is
    // not the outcome, the reply (or its absence at "end") is.
    socket.once("error", (e: NodeJS.ErrnoException) => {
      if (!connected) return done({ _tag: "Failed", reason: "connect", detail: e.code ?? e.message })
      if (reply.length === 0 && e.code !== "EPIPE") done({ _tag: "Failed", reason: "closed", detail: e.code ?? e.message })
    })
    socket.once("close", () =>
      done({ _tag: "Failed", reason: reply.length === 0 ? "closed" : "garbage", detail: "connection closed without a complete reply" })
    )
  })
}

export interface ClamdFilterOptions extends ClamdOptions {
  readonly onFailure: Scan.OnFailure
  /** Named in the X-Virus-Scanned header. */
  readonly hostname: string
}

/** ClamAV at the end of DATA: a virus gives 554 5.7.0; a clean message is tagged X-Virus-Scanned. */
export const filter = (opts: ClamdFilterOptions): Filter => ({
  name: "clamav",
  data: async (c) => {
    const o = await scan(opts, c.message)
    switch (o._tag) {
      case "Infected":
        return {
          verdicts: [
            {
              name: "clamav",
              stage: "data",
              result: "virus",
              action: "reject",
              reply: Scan.ScanReplies.virus(o.signature),
              detail: o.reply
            }
          ]
        }
      case "Clean":
        return {
          verdicts: [{ name: "clamav", stage: "data", result: "clean", action: "accept", detail: o.reply }],
          message: Header.prepend(Header.remove(c.message, ["x-virus-scanned"]), [["X-Virus-Scanned", `ClamAV at ${opts.hostname}`]])
        }
      case "Skipped":
        return { verdicts: [{ name: "clamav", stage: "data", result: "skipped", action: "accept", detail: `${o.size} bytes > max_size` }] }
      case "Failed":
        return Scan.failed("clamav", `${o.reason}: ${o.detail}`, opts.onFailure, c.message)
    }
  }
})
