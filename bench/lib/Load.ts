// A lean SMTP load generator on raw sockets (one message per session, like smtp-source) that records, for each
// message, the time from the final "." to the 250: the latency a sender sees. Loopback only.
import { connect } from "node:net"

export interface LoadOptions {
  readonly port: number
  readonly host?: string
  readonly sessions: number
  readonly messages: number
  readonly size: number
  readonly recipients: number
  readonly from: string
  readonly to: (i: number, r: number) => string
  /** Called with each message's final reply and when it came (performance.now()). */
  readonly onReply?: (i: number, code: string, at: number) => void
  /** Paced load: message i starts no earlier than i / perSecond seconds after the first (default: as fast as it goes). */
  readonly perSecond?: number
}

export interface LoadResult {
  readonly sent: number
  readonly accepted: number
  readonly failed: number
  readonly latenciesMs: ReadonlyArray<number>
  readonly elapsedMs: number
  readonly replies: ReadonlyMap<string, number>
}

const bodyOf = (size: number, i: number): string => {
  const head = `From: <bench@src.test>\r\nTo: <x@sink.test>\r\nSubject: bench ${i}\r\nMessage-ID: <bench.${i}.${Date.now()}@src.test>\r\n\r\n`
  const line = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
  let body = head
  while (body.length < size - line.length) body += line
  return body
}

export const runLoad = async (o: LoadOptions): Promise<LoadResult> => {
  const host = o.host ?? "127.0.0.1"
  const latencies: Array<number> = []
  const replies = new Map<string, number>()
  let next = 0
  let accepted = 0
  let failed = 0
  const template = bodyOf(o.size, 0)
  const start = performance.now()

  const one = (i: number) =>
    new Promise<void>((done) => {
      const sock = connect(o.port, host)
      let buf = ""
      let step = 0
      let dotAt = 0
      const rcpts = Array.from({ length: o.recipients }, (_, r) => o.to(i, r))
      const finish = (ok: boolean, code: string) => {
        if (ok) accepted++
        else failed++
        replies.set(code, (replies.get(code) ?? 0) + 1)
        sock.end("QUIT\r\n")
        sock.destroy()
        done()
      }
      sock.setNoDelay(true)
      sock.on("error", () => {
        if (step < 99) {
          step = 99
          failed++
          done()
        }
      })
      sock.on("data", (chunk) => {
        buf += chunk.toString("latin1")
        for (;;) {
          const nl = buf.indexOf("\r\n")
          if (nl < 0) return
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 2)
          if (line[3] === "-") continue
          const code = line.slice(0, 3)
          if (step === 0) {
            step = 1
            sock.write("EHLO bench.test\r\n")
            continue
          }
          if (step === 1) {
            // Pipelined: MAIL, RCPTs, DATA in one write.
            step = 2
            sock.write(`MAIL FROM:<${o.from}>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join("")}DATA\r\n`)
            continue
          }
          if (step >= 2 && step < 2 + 1 + rcpts.length) {
            if (!code.startsWith("2") && !(code === "354")) {
              step = 99
              return finish(false, code)
            }
            step++
            if (step === 2 + 1 + rcpts.length) {
              // the DATA reply is next
            }
            continue
          }
          if (step === 2 + 1 + rcpts.length) {
            if (code !== "354") {
              step = 99
              return finish(false, code)
            }
            step++
            sock.write(template.replace("bench 0", `bench ${i}`) + ".\r\n")
            dotAt = performance.now()
            continue
          }
          if (step === 3 + 1 + rcpts.length) {
            step = 99
            const at = performance.now()
            latencies.push(at - dotAt)
            o.onReply?.(i, code, at)
            return finish(code === "250", code)
          }
        }
      })
    })

  const worker = async () => {
    while (next < o.messages) {
      const i = next++
      const due = o.perSecond ? start + (i * 1000) / o.perSecond : 0
      const wait = due - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      await one(i)
    }
  }
  await Promise.all(Array.from({ length: o.sessions }, worker))
  return { sent: o.messages, accepted, failed, latenciesMs: latencies.sort((a, b) => a - b), elapsedMs: performance.now() - start, replies }
}
