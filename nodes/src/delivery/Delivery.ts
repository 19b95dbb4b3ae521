// The shapes every delivery client (SMTP, LMTP, Maildir) answers with: one reply per recipient and the host used.
// Types only: no I/O here, and no interpretation of replies (the message decider classifies them).
import type { Reply, Trace } from "@missive/core"

export interface Envelope {
  /** "" is the null reverse-path, sent as MAIL FROM:<>. */
  readonly from: string
  readonly to: ReadonlyArray<string>
  /**
   * Asked just before the end of the message data (the final dot): false abandons the transaction by closing the
   * connection, so the server never accepts it (a cluster node whose lease ran out while the session was under way).
   * A promise when the answer comes from another thread (the delivery thread asks the main thread).
   */
  readonly fence?: (() => boolean | Promise<boolean>) | undefined
}

export interface RecipientResult {
  readonly rcpt: string
  readonly reply: Reply.Reply
}

export interface DeliveryResult {
  /** "host:port" that gave the replies (the last one tried when none answered), "maildir" for local delivery. */
  readonly host: string
  /** One entry per envelope recipient, in envelope order. */
  readonly results: ReadonlyArray<RecipientResult>
  /** Whether the transaction ran under TLS. */
  readonly tls?: boolean | undefined
  /** Hops tried and the TLS of the session (SMTP and LMTP; none for Maildir). */
  readonly trace?: Trace.Trace | undefined
}

/** The same reply for every recipient. */
export const allGet = (to: ReadonlyArray<string>, reply: Reply.Reply): ReadonlyArray<RecipientResult> => to.map((rcpt) => ({ rcpt, reply }))
