// The filter stage's contract: what a filter is, what it sees at each SMTP stage, and what it may answer.
// Holds no checks itself (those are the filters: Addresses, Auth, Sign, the scanners, DNSBL, hooks, milter) and
// never touches a store: the stage's outcome reaches intake, which records it as MessageFiltered in the accept commit.
// Security: a filter that throws or rejects its promise gives 451 4.3.0 for that command, never a crash or a 250.
//
// How a new filter plugs in:
//   1. Write a module exporting a `Filter`: a `name` and any of the stage methods `connect`, `helo`, `mail`, `rcpt`,
//      `data`. Each gets that stage's context and returns (or resolves to) a `StageResult`: its verdicts (each with
//      the action it asks for: accept, add-headers, quarantine, tempfail or reject with the reply to give), and, where
//      the stage allows it, a rewrite (mail: the sender; rcpt: the recipients an address expands to; data: the
//      message bytes, e.g. with headers added or removed). A filter enforces its own deadline (a scanner's timeout).
//   2. Build it from the configuration in `nodes/src/filter/Filters.ts` (`fromConfig`), in the order it must run:
//      address checks first, then sender authentication, then content scanners and hooks, signing last.
//   3. The stage (`Stage.ts`) runs the filters in that order at each SMTP command. The most severe action wins
//      (reject > tempfail > quarantine > add-headers > accept); the first reject or tempfail ends the stage, and its
//      reply is the SMTP reply. HELO filters run at the first MAIL of a session (smtp-server has no HELO hook; this is
//      Postfix's smtpd_delay_reject). The DATA stage runs once the message is complete and checked, before intake's
//      durable commit: a reject or tempfail there is answered before any 250.
//   4. Every verdict of a session's connect/helo stages, its transaction's mail/rcpt stages and the data stage ends up
//      in the message's MessageFiltered event (core/src/Message.ts), with the rewrites and the filter policy's hash.
import type { Message, Reply } from "@missive/core"

export type Stage = Message.Verdict["stage"]
export type Action = Message.FilterAction
export type Verdict = Message.Verdict
export type Rewrite = Message.Rewrite

/** Who is talking: fixed for the session once known. */
export interface SessionInfo {
  readonly id: string
  readonly listener: "smtp" | "submission"
  readonly ip: string
  readonly helo: string
  readonly tls: boolean
  /** The authenticated (AUTH) user, if any. */
  readonly user?: string | undefined
  /** The client's address is in relay.trusted_networks. */
  readonly trusted: boolean
}

export interface ConnectContext {
  readonly session: SessionInfo
}

export interface HeloContext {
  readonly session: SessionInfo
  readonly helo: string
}

export interface MailContext {
  readonly session: SessionInfo
  /** "" for the null sender <>. */
  readonly sender: string
  readonly args: Readonly<Record<string, string | boolean>>
}

export interface RcptContext {
  readonly session: SessionInfo
  /** The sender after the mail stage's rewrite. */
  readonly sender: string
  readonly recipient: string
  /** Recipients accepted so far in this transaction (after expansion). */
  readonly accepted: ReadonlyArray<string>
  /** What the filters before this one expanded the recipient to (aliases, virtual maps); [recipient] when none did. */
  readonly expanded: ReadonlyArray<string>
}

export interface DataContext {
  readonly session: SessionInfo
  readonly sender: string
  readonly recipients: ReadonlyArray<string>
  /** The message as received (dot-unstuffed, CRLF), with the rewrites of the filters before this one. */
  readonly message: Buffer
  /** Verdicts earlier stages and earlier data filters gave for this message (e.g. the SPF result from MAIL). */
  readonly verdicts: ReadonlyArray<Verdict>
}

export interface StageResult {
  readonly verdicts: ReadonlyArray<Verdict>
  /** mail stage: the sender to use from now on (canonical rewriting). */
  readonly sender?: string | undefined
  /** rcpt stage: what the recipient expands to (aliases, virtual maps); absent: the recipient itself. */
  readonly recipients?: ReadonlyArray<string> | undefined
  /** data stage: the message to pass on (headers added, removed or rewritten). */
  readonly message?: Buffer | undefined
  readonly rewrites?: ReadonlyArray<Rewrite> | undefined
}

type Step<C> = (context: C) => StageResult | Promise<StageResult>

export interface Filter {
  readonly name: string
  readonly connect?: Step<ConnectContext>
  readonly helo?: Step<HeloContext>
  readonly mail?: Step<MailContext>
  readonly rcpt?: Step<RcptContext>
  readonly data?: Step<DataContext>
  /** Releases the filter's resources (sockets, timers) when the node stops. */
  readonly close?: () => Promise<void>
}

/** Actions from least to most severe. */
const SEVERITY: Readonly<Record<Action, number>> = { accept: 0, "add-headers": 1, quarantine: 2, tempfail: 3, reject: 4 }

export const moreSevere = (a: Action, b: Action): Action => (SEVERITY[b] > SEVERITY[a] ? b : a)

export const ends = (a: Action): boolean => a === "reject" || a === "tempfail"

/** Replies the filter stage gives by default; a verdict may carry its own. */
export const FilterReplies = {
  rejected: { code: 550, enhanced: "5.7.1", text: "Message rejected by policy" },
  tempfailed: { code: 451, enhanced: "4.7.1", text: "Message deferred by policy, try again later" },
  filterError: { code: 451, enhanced: "4.3.0", text: "Temporary local problem in filtering, try again later" }
} as const satisfies Record<string, Reply.Reply>

/** A verdict that asks for nothing (a finding only). */
export const note = (name: string, stage: Stage, result: string, extra: Partial<Verdict> = {}): Verdict => ({
  name,
  stage,
  result,
  action: "accept",
  ...extra
})
