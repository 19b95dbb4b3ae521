// DATA checks: size, line length and bare CR/LF over the dot-unstuffed message stream.
// Buffers the message only while it can still be accepted; never decides anything else.
// Security: the verdict is given only once DATA has ended at <CRLF>.<CRLF> (smtp-server's
// parser); a bare CR or LF is never a line boundary for relaying, it is refused or rewritten.

import { Reply } from "@missive/core"

export interface DataLimits {
  /** Largest message accepted, in octets after dot-unstuffing. */
  readonly maxMessageSize: number
  /** Longest line accepted, in octets, not counting its line ending. */
  readonly maxLineLength: number
  readonly bareLf: "reject" | "normalize"
}

export type DataVerdict =
  | { readonly _tag: "Accept"; readonly body: Buffer; readonly normalized: boolean }
  | { readonly _tag: "Reject"; readonly reply: Reply.Reply; readonly reason: "size" | "line" | "bare" }

const CR = 0x0d
const LF = 0x0a

/**
 * Reads a message chunk by chunk. A message over the size limit, with an over-long line, or
 * (in "reject" mode) with a bare CR or LF stops being buffered at once: it is read to its end,
 * then discarded.
 */
export class DataCheck {
  private chunks: Buffer[] = []
  private size = 0
  private lineLength = 0
  private pendingCr = false
  private bare = false
  private longLine = false

  constructor(private readonly limits: DataLimits) {}

  push(chunk: Buffer): void {
    this.size += chunk.length
    if (this.size > this.limits.maxMessageSize) {
      this.chunks = []
      return
    }
    if (this.longLine || (this.bare && this.limits.bareLf === "reject")) return
    this.scan(chunk)
    if (this.longLine || (this.bare && this.limits.bareLf === "reject")) this.chunks = []
    else this.chunks.push(chunk)
  }

  finish(): DataVerdict {
    if (this.pendingCr) {
      this.bare = true
      this.pendingCr = false
    }
    if (this.size > this.limits.maxMessageSize) return { _tag: "Reject", reply: Reply.Replies.tooBig, reason: "size" }
    if (this.longLine) return { _tag: "Reject", reply: Reply.Replies.lineTooLong, reason: "line" }
    if (this.bare && this.limits.bareLf === "reject") return { _tag: "Reject", reply: Reply.Replies.bareLf, reason: "bare" }
    const body = Buffer.concat(this.chunks, this.size)
    this.chunks = []
    return this.bare ? { _tag: "Accept", body: normalizeLineEnds(body), normalized: true } : { _tag: "Accept", body, normalized: false }
  }

  /**
   * Tracks the current line's length; a bare CR or bare LF ends a line, as normalisation will make it.
   * Jumps from line end to line end with Buffer.indexOf (native) instead of visiting every byte in JS.
   */
  private scan(chunk: Buffer): void {
    const max = this.limits.maxLineLength
    const n = chunk.length
    let i = 0
    if (this.pendingCr && n > 0) {
      this.pendingCr = false
      this.lineLength = 0
      if (chunk[0] === LF) i = 1
      else this.bare = true
    }
    let cr = chunk.indexOf(CR, i)
    let lf = chunk.indexOf(LF, i)
    while (i < n) {
      if (cr >= 0 && cr < i) cr = chunk.indexOf(CR, i)
      if (lf >= 0 && lf < i) lf = chunk.indexOf(LF, i)
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf)
      const stop = end < 0 ? n : end
      this.lineLength += stop - i
      if (this.lineLength > max) {
        this.longLine = true
        return
      }
      if (end < 0) return
      if (end === lf) {
        // An LF not preceded by CR (a CR before it would have been handled first).
        this.bare = true
        this.lineLength = 0
        i = end + 1
      } else if (end + 1 === n) {
        this.pendingCr = true
        return
      } else {
        if (chunk[end + 1] !== LF) this.bare = true
        this.lineLength = 0
        i = chunk[end + 1] === LF ? end + 2 : end + 1
      }
    }
  }
}

/** Rewrites every bare CR and bare LF as CRLF; latin1 maps bytes to code units one to one. */
export const normalizeLineEnds = (body: Buffer): Buffer => Buffer.from(body.toString("latin1").replace(/\r\n|\r|\n/g, "\r\n"), "latin1")
