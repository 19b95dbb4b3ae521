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

  /** Tracks the current line's length; a bare CR or bare LF ends a line, as normalisation will make it. */
  private scan(chunk: Buffer): void {
    const max = this.limits.maxLineLength
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]
      if (this.pendingCr) {
        this.pendingCr = false
        if (b === LF) {
          this.lineLength = 0
          continue
        }
        this.bare = true
        this.lineLength = 0
      }
      if (b === CR) this.pendingCr = true
      else if (b === LF) {
        this.bare = true
        this.lineLength = 0
      } else if (++this.lineLength > max) {
        this.longLine = true
        return
      }
    }
  }
}

/** Rewrites every bare CR and bare LF as CRLF; latin1 maps bytes to code units one to one. */
export const normalizeLineEnds = (body: Buffer): Buffer =>
  Buffer.from(body.toString("latin1").replace(/\r\n|\r|\n/g, "\r\n"), "latin1")
