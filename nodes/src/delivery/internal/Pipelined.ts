// One SMTP transaction with PIPELINING (RFC 2920) on a session nodemailer opened: MAIL, every RCPT and DATA go out in
// one write, the dot-stuffed message and its final dot in a second, and the replies are taken in order from
// nodemailer's reply queue (its `_responseActions`: one action per reply, so a reset or QUIT queued later gets its own
// reply after ours). Two writes and two round trips per message instead of four of each.
// Must not choose hops, pool, or interpret replies beyond what the protocol says (2xx accepted, 354 go ahead).
// Security stance: the peer is untrusted; its replies are only matched in order and parsed as data. The envelope's
// addresses were checked at intake; one that would break the command line (CR, LF, <, >) is refused here as nodemailer
// refuses it, never written.
import { Reply } from "@missive/core"
import type { Envelope, RecipientResult } from "../Delivery.js"

/** The parts of nodemailer's SMTPConnection (8.0.11) this transaction drives: private, pinned with the dependency. */
export interface Wire {
  readonly _supportedExtensions: ReadonlyArray<string>
  readonly _maxAllowedSize: number
  readonly _responseActions: Array<(reply: string) => void>
  readonly _socket: { write(chunk: Buffer): boolean; cork(): void; uncork(): void }
  close(): void
}

/** Whether a session can run the pipelined transaction: an SMTP (not LMTP) server that offered PIPELINING. */
export const canPipeline = (wire: Wire): boolean =>
  Array.isArray(wire._supportedExtensions) && wire._supportedExtensions.includes("PIPELINING")

export interface Outcome {
  readonly results: ReadonlyArray<RecipientResult>
  /** The server's reply to the data accepted the message: its transaction state is reset, no RSET needed. */
  readonly complete: boolean
  /** MAIL got 421: the server is closing the channel and took nothing. */
  readonly closingAtMail: boolean
}

const unsafe = /[\r\n<>]/
const nonAscii = /[\x80-\uFFFF]/
const DOT = Buffer.from(".")
const CRLF = Buffer.from("\r\n")
const END = Buffer.from(".\r\n")

/**
 * The message as it goes on the wire after DATA, without the final dot: every line that starts with a dot gets one
 * more (RFC 5321 §4.5.2), and a body that does not end with CRLF gets one. The body is already CRLF (intake refuses
 * bare line ends), so "\n." finds every line start but the first. Pieces of the body, not a copy.
 */
export const dotStuffed = (body: Buffer): Array<Buffer> => {
  const parts: Array<Buffer> = []
  if (body.length === 0) return parts
  let start = 0
  if (body[0] === 0x2e) parts.push(DOT)
  for (let at = body.indexOf("\n.", 0); at !== -1; at = body.indexOf("\n.", at + 2)) {
    parts.push(body.subarray(start, at + 1), DOT)
    start = at + 1
  }
  parts.push(start === 0 ? body : body.subarray(start))
  if (body.length < 2 || body[body.length - 2] !== 0x0d || body[body.length - 1] !== 0x0a) parts.push(CRLF)
  return parts
}

/** MAIL, the RCPTs and DATA as one buffer; the parameters are those the server offered and the message needs. */
export const commands = (wire: Wire, from: string, to: ReadonlyArray<string>, body: Buffer, eightBit: boolean): Buffer => {
  const offered = wire._supportedExtensions
  const params: Array<string> = []
  if ((nonAscii.test(from) || to.some((r) => nonAscii.test(r))) && offered.includes("SMTPUTF8")) params.push("SMTPUTF8")
  if (eightBit && offered.includes("8BITMIME")) params.push("BODY=8BITMIME")
  if (body.length > 0 && offered.includes("SIZE")) params.push(`SIZE=${body.length}`)
  let text = `MAIL FROM:<${from}>${params.length ? " " + params.join(" ") : ""}\r\n`
  for (const rcpt of to) text += `RCPT TO:<${rcpt}>\r\n`
  return Buffer.from(text + "DATA\r\n", "utf8")
}

const accepted = (reply: string): boolean => reply.charCodeAt(0) === 0x32 // "2"

/**
 * Runs the transaction; `fail` is how the session reports a broken connection meanwhile (it calls the returned
 * function). Gives one reply per recipient: its RCPT refusal, or the reply to MAIL, DATA or the data.
 */
export const transact = (
  wire: Wire,
  envelope: Envelope,
  body: Buffer,
  eightBit: boolean,
  /** Registers what to do when the connection breaks before the end; the reply given to the rest. */
  onBreak: (broken: (general: Reply.Reply) => void) => void,
  fenced: () => Reply.Reply
): Promise<Outcome> =>
  new Promise((resolve) => {
    const from = envelope.from.trim()
    const to = envelope.to.map((r) => r.trim())
    const refused = new Map<string, Reply.Reply>()
    let done = false
    const finish = (general: Reply.Reply, complete = false, closingAtMail = false): void => {
      if (done) return
      done = true
      resolve({ results: envelope.to.map((rcpt, i) => ({ rcpt, reply: refused.get(to[i]!) ?? general })), complete, closingAtMail })
    }
    onBreak(finish)
    if (wire._maxAllowedSize && body.length > wire._maxAllowedSize) return finish(Reply.Replies.tooBig)
    if (unsafe.test(from) || to.some((r) => r === "" || unsafe.test(r))) return finish(Reply.Replies.badSyntax)

    const queue = wire._responseActions
    queue.push((reply) => {
      if (!accepted(reply)) finish(Reply.parse(reply), false, reply.startsWith("421"))
    })
    let taken = 0
    to.forEach((rcpt) =>
      queue.push((reply) => {
        if (accepted(reply)) taken++
        else refused.set(rcpt, Reply.parse(reply))
      })
    )
    queue.push((reply) => {
      const go = reply.startsWith("354")
      if (go && (done || taken === 0)) {
        // 354 after a refused MAIL or every RCPT refused (RFC 2920 §3.1: the server must not): the connection goes
        // rather than end a message the server should not take
        finish(Reply.parse(reply))
        return wire.close()
      }
      if (done) return // MAIL was refused: the RCPTs and DATA got their 503s
      if (!go) return finish(Reply.parse(reply)) // the refused recipients keep their own replies
      queue.push((final) => finish(Reply.parse(final), accepted(final)))
      const socket = wire._socket
      const write = (pieces: ReadonlyArray<Buffer>): void => {
        socket.cork()
        for (const piece of pieces) socket.write(piece)
        socket.uncork()
      }
      if (!envelope.fence) return write([...dotStuffed(body), END])
      // the fence is asked after the data and before its end: refused, the connection goes without the final dot
      write(dotStuffed(body))
      const end = (ok: boolean): void => {
        if (done) return
        if (ok) return write([END])
        finish(fenced())
        wire.close()
      }
      const ok = envelope.fence()
      if (typeof ok === "boolean") end(ok)
      else ok.then(end, () => end(false))
    })
    wire._socket.write(commands(wire, from, to, body, eightBit))
  })
