// CHUNKING (RFC 3030) for Missive's SMTP sessions: `BDAT <size> [LAST]` carries the message in chunks of exactly
// <size> octets each, read as they are (no dot-stuffing, no end-of-data line). smtp-server (3.21) has no BDAT, so
// Missive's connections (a subclass; smtp-server is not patched) add it on the same path as DATA: the chunks are fed
// into the message stream that onData reads (its size, line and bare CR/LF checks, its filters and accept), and the
// reply to the LAST chunk is onData's reply, as it is to the final dot of DATA.
// Security: a chunk is always read in full, also when it is refused (no RCPT yet, a failed transaction), so that no
// byte of a message is ever taken for a command; a malformed BDAT, whose chunk length is unknown, closes the session.
// A transaction is BDAT or DATA, never both (RFC 3030 §2).
import { PassThrough } from "node:stream"
import type { SMTPServerDataStream } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"

type Parser = Exclude<SMTPConnection["_parser"], false>
type Done = (err?: Error | null) => void

/** The chunk being read: how many of its octets are still to come, and what to do once they have. */
interface Chunk {
  left: number
  readonly end: (continueWith: () => void) => void
}

/** A BDAT transaction: the message stream onData reads, and onData's decision once it has made it. */
interface Transaction {
  readonly stream: SMTPServerDataStream
  bytes: number
  decided?: { readonly err: (Error & { responseCode?: number }) | null | undefined; readonly message: unknown }
  onDecided?: () => void
}

const BDAT = /^BDAT +(\d{1,12})( +LAST)? *$/i

export class ChunkingConnection extends SMTPConnection {
  private chunk: Chunk | undefined
  private bdat: Transaction | undefined
  private feeding = false

  /** EHLO as smtp-server answers it, with CHUNKING among the extensions. */
  override handler_EHLO(command: Buffer, callback: () => void): void {
    const send = this.send
    this.send = (code, data, context) => send.call(this, code, code === 250 && Array.isArray(data) ? [...data, "CHUNKING"] : data, context)
    try {
      super.handler_EHLO(command, callback)
    } finally {
      this.send = send
    }
  }

  override handler_DATA(command: Buffer, callback: () => void): void {
    if (this.bdat) {
      this.send(503, "5.5.1 Error: DATA is not allowed after BDAT in one transaction")
      return callback()
    }
    super.handler_DATA(command, callback)
  }

  handler_BDAT(command: Buffer, callback: () => void): void {
    const parser = this._parser
    if (!parser) return callback()
    const m = BDAT.exec(command.toString("latin1"))
    if (!m) {
      // The chunk's length is unknown: what follows cannot be told apart from commands.
      this.send(501, "5.5.4 Error: syntax: BDAT <size> [LAST]; closing the session")
      this.close()
      return callback()
    }
    const size = Number(m[1])
    const last = m[2] !== undefined
    const refusal = !this.session.envelope.rcptTo.length ? "5.5.1 Error: need RCPT command" : undefined
    const tx = refusal ? undefined : (this.bdat ??= this.begin())
    const end = (continueWith: () => void): void => {
      if (refusal) {
        this.send(503, refusal)
        return continueWith()
      }
      if (!last) {
        this.send(250, `2.0.0 ${size} octets received`)
        return continueWith()
      }
      this.finish(tx!, continueWith)
    }
    if (size === 0) return end(callback)
    this.chunk = { left: size, end }
    this.feedChunks(parser)
    parser._dataMode = true
    callback()
  }

  override _resetSession(): void {
    this.abort("transaction reset")
    super._resetSession()
  }

  override _onClose(): void {
    this.abort("Connection closed before the message was received in full")
    super._onClose()
  }

  /** A transaction's message stream, handed to onData as DATA hands its own. */
  private begin(): Transaction {
    const stream = Object.assign(new PassThrough(), { byteLength: 0, sizeExceeded: false }) as unknown as SMTPServerDataStream
    const tx: Transaction = { stream, bytes: 0 }
    this._server.onData(stream, this.session, (err, message) => {
      tx.decided = { err, message }
      tx.onDecided?.()
    })
    return tx
  }

  /** The parser's data mode reads chunk octets while a chunk is open (installed once per session). */
  private feedChunks(parser: Parser): void {
    if (this.feeding) return
    this.feeding = true
    const dataMode = parser._feedDataStream.bind(parser)
    parser._feedDataStream = (data: Buffer, done: Done) => {
      const c = this.chunk
      if (!c) return dataMode(data, done)
      const n = Math.min(c.left, data.length)
      c.left -= n
      if (n > 0 && this.bdat) {
        this.bdat.bytes += n
        this.bdat.stream.write(data.subarray(0, n))
      }
      if (c.left > 0) return done()
      this.chunk = undefined
      parser._dataMode = false
      const rest = data.subarray(n)
      // The reply first (the LAST one waits for onData), then the commands pipelined after the chunk.
      c.end(() => parser._write(rest, "buffer", done))
    }
  }

  /** The LAST chunk is in: the message ends, and onData's decision is the reply, as after DATA's final dot. */
  private finish(tx: Transaction, continueWith: () => void): void {
    tx.stream.byteLength = tx.bytes
    tx.stream.end()
    // While onData decides, the session waits on us, not on the client: smtp-server's idle timeout then holds off (as
    // it does after DATA's final dot).
    this._dataStream = tx.stream
    const reply = (): void => {
      this._dataStream = false
      const { err, message } = tx.decided!
      if (err) this.send(err.responseCode ?? 450, err.message)
      else this.send(250, typeof message === "string" ? message : "2.0.0 OK: message queued", "DATA_OK")
      this.bdat = undefined
      this._transactionCounter++
      this._unrecognizedCommands = 0
      this._resetSession()
      continueWith()
    }
    if (tx.decided) reply()
    else tx.onDecided = reply
  }

  /** A transaction given up before its LAST chunk: its message stream fails, so nothing of it is accepted. */
  private abort(why: string): void {
    const tx = this.bdat
    if (!tx) return
    this.bdat = undefined
    if (!tx.stream.writableEnded && !tx.stream.destroyed) {
      const err = Object.assign(new Error(why), { code: "ECONNECTION" })
      tx.stream.destroy(tx.stream.listenerCount("error") ? err : undefined)
    }
  }
}
