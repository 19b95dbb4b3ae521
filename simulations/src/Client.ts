// A lean SMTP client for the simulated senders' plain sessions (no TLS, no AUTH): one TCP connection with TCP_NODELAY,
// EHLO once, then per message MAIL, every RCPT and DATA in one write (ESMTP PIPELINING, RFC 2920, when offered; one
// command at a time otherwise) and the body in one corked write. No per-message timer (an idle timeout on the socket),
// no per-message parser objects. Knows nothing of scenarios or the ledger; loopback is the caller's business.
import { connect, type Socket } from "node:net"

export interface Reply {
  readonly code: number
  readonly text: string
}

/** A refusal or a failure: `responseCode` is undefined when the connection failed (no SMTP reply to blame). */
export class SmtpError extends Error {
  constructor(
    message: string,
    readonly responseCode: number | undefined,
    readonly stage: "connect" | "envelope" | "data" | "body"
  ) {
    super(message)
  }
}

export interface Sent {
  /** Recipients the server accepted (as given). */
  readonly accepted: ReadonlyArray<string>
  readonly rejected: ReadonlyArray<{ readonly rcpt: string; readonly code: number }>
  readonly reply: Reply
}

export interface Session {
  /** False once the connection closed or failed; open a new session then. */
  readonly alive: () => boolean
  /**
   * One transaction. `parts` are the message as it goes on the wire after DATA (already CRLF-terminated lines; they
   * are dot-stuffed here only when a line starts with "."). Rejects with SmtpError.
   */
  send(from: string, to: ReadonlyArray<string>, parts: ReadonlyArray<Buffer>): Promise<Sent>
  close(): void
}

const CRLF_DOT_CRLF = Buffer.from(".\r\n")
const CRLF = Buffer.from("\r\n")

/** Whether a line starts with "." (the check is on the parts joined, so a line split across parts counts too). */
const needsStuffing = (parts: ReadonlyArray<Buffer>): boolean =>
  parts.some((p, i) => p.includes("\n.") || (p[0] === 0x2e && (i === 0 || parts[i - 1]!.at(-1) === 0x0a)))

const stuff = (parts: ReadonlyArray<Buffer>): Array<Buffer> => [
  Buffer.from(
    Buffer.concat(parts)
      .toString("latin1")
      .replace(/(^|\n)\./g, "$1.."),
    "latin1"
  )
]

export interface OpenOptions {
  readonly host: string
  readonly port: number
  readonly helo: string
  /** Connect, greeting and idle timeout, ms. */
  readonly timeoutMs: number
}

/** Connects, reads the greeting and says EHLO. Rejects with SmtpError (stage "connect"). */
export const open = (o: OpenOptions): Promise<Session> =>
  new Promise<Session>((resolveOpen, rejectOpen) => {
    const socket: Socket = connect({ host: o.host, port: o.port, noDelay: true })
    socket.setTimeout(o.timeoutMs)
    let alive = true
    let buf = ""
    let lines: Array<string> = []
    const replies: Array<Reply> = []
    /** Waits for `n` replies; resolved early (with fewer) when the connection ends. */
    let want: { n: number; done: (r: Array<Reply>) => void } | undefined
    let opened = false
    let pipelining = false

    const flush = (): void => {
      if (want && (replies.length >= want.n || !alive)) {
        const w = want
        want = undefined
        w.done(replies.splice(0, Math.min(w.n, replies.length)))
      }
    }
    const take = (n: number): Promise<Array<Reply>> =>
      new Promise((done) => {
        want = { n, done }
        flush()
      })

    socket.on("data", (chunk: Buffer) => {
      buf += chunk.toString("latin1")
      let i: number
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 2)
        if (line.length >= 4 && line.charCodeAt(3) === 0x2d /* - */) {
          lines.push(line.slice(4))
          continue
        }
        lines.push(line.slice(4))
        replies.push({ code: Number(line.slice(0, 3)) || 0, text: lines.join("\n") })
        lines = []
      }
      flush()
    })
    const end = (e?: Error): void => {
      if (!alive) return
      alive = false
      socket.destroy()
      if (!opened)
        rejectOpen(new SmtpError(`cannot open a session to ${o.host}:${o.port}: ${e?.message ?? "closed"}`, undefined, "connect"))
      flush()
    }
    socket.on("error", end)
    socket.on("close", () => end())
    socket.on("timeout", () => end(new Error("timed out")))

    const session: Session = {
      alive: () => alive,
      close: () => {
        if (!alive) return
        alive = false
        socket.end("QUIT\r\n")
        flush()
      },
      send: async (from, to, parts) => {
        if (!alive) throw new SmtpError("the session is closed", undefined, "envelope")
        const envelope = [`MAIL FROM:<${from}>`, ...to.map((t) => `RCPT TO:<${t}>`), "DATA"]
        let got: Array<Reply>
        if (pipelining) {
          socket.write(`${envelope.join("\r\n")}\r\n`)
          got = await take(envelope.length)
        } else {
          got = []
          for (const cmd of envelope) {
            socket.write(`${cmd}\r\n`)
            const r = (await take(1))[0]
            if (!r) break
            got.push(r)
            if (r.code >= 400 && cmd.startsWith("MAIL")) break
          }
        }
        const [mail, ...rest] = got
        if (!mail) throw new SmtpError("connection lost before MAIL was answered", undefined, "envelope")
        if (mail.code >= 400) {
          if (mail.code === 421) session.close()
          throw new SmtpError(`MAIL FROM refused: ${mail.code} ${mail.text}`, mail.code, "envelope")
        }
        const accepted: Array<string> = []
        const rejected: Array<{ rcpt: string; code: number }> = []
        for (let k = 0; k < to.length; k++) {
          const r = rest[k]
          if (!r) throw new SmtpError("connection lost during RCPT", undefined, "envelope")
          if (r.code >= 200 && r.code < 300) accepted.push(to[k]!)
          else rejected.push({ rcpt: to[k]!, code: r.code })
        }
        const data = rest[to.length]
        if (!data) throw new SmtpError("connection lost before DATA was answered", undefined, "data")
        if (data.code !== 354) {
          // The transaction is still open when MAIL passed: reset it for the next message.
          if (alive) {
            socket.write("RSET\r\n")
            await take(1)
          }
          const code = accepted.length === 0 ? (rejected[0]?.code ?? data.code) : data.code
          throw new SmtpError(`no recipient accepted (first refusal ${code})`, code, "data")
        }
        const body = needsStuffing(parts) ? stuff(parts) : parts
        socket.cork()
        for (const p of body) socket.write(p)
        const last = body.at(-1)
        if (last && (last.length < 2 || last[last.length - 2] !== 0x0d || last[last.length - 1] !== 0x0a)) socket.write(CRLF)
        socket.write(CRLF_DOT_CRLF)
        process.nextTick(() => socket.uncork())
        const final = (await take(1))[0]
        if (!final) throw new SmtpError("connection lost after the body was sent", undefined, "body")
        if (final.code >= 400) {
          if (final.code === 421) session.close()
          throw new SmtpError(`message refused: ${final.code} ${final.text}`, final.code, "body")
        }
        return { accepted, rejected, reply: final }
      }
    }

    void (async () => {
      const greeting = (await take(1))[0]
      if (!greeting || greeting.code !== 220) return end(new Error(greeting ? `greeting ${greeting.code} ${greeting.text}` : "no greeting"))
      socket.write(`EHLO ${o.helo}\r\n`)
      const ehlo = (await take(1))[0]
      if (!ehlo || ehlo.code !== 250) return end(new Error(ehlo ? `EHLO ${ehlo.code} ${ehlo.text}` : "no EHLO reply"))
      pipelining = /^PIPELINING\b/im.test(ehlo.text)
      opened = true
      resolveOpen(session)
    })()
  })
