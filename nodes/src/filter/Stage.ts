// Runs the configured filters at each SMTP command of a session, in their order, and keeps what they said: the
// session's verdicts (connect, helo), the transaction's (mail, rcpt, data) and the rewrites. Gives ingress the reply
// for each command and, at the end of DATA, the message's FilterOutcome for intake to record.
// Must not speak SMTP or store anything; ingress answers, intake records.
import type { Reply } from "@missive/core"
import {
  ends,
  FilterReplies,
  moreSevere,
  type Action,
  type Filter,
  type Rewrite,
  type SessionInfo,
  type Stage,
  type StageResult,
  type Verdict
} from "./Filter.js"

/** What one command's filters decided. */
export interface Outcome {
  readonly action: Action
  /** Set when the action is reject or tempfail: the reply to give. */
  readonly reply?: Reply.Reply | undefined
  readonly verdicts: ReadonlyArray<Verdict>
}

export interface MessageOutcome extends Outcome {
  readonly message: Buffer
  /** Every verdict of the message (session, transaction, data), the rewrites and the filter policy hash. */
  readonly record: {
    readonly action: Action
    readonly reply?: Reply.Reply | undefined
    readonly verdicts: ReadonlyArray<Verdict>
    readonly rewrites: ReadonlyArray<Rewrite>
    readonly filterPolicy: string
  }
}

export interface SessionFilters {
  connect(): Promise<Outcome>
  /** Runs the helo filters first, once per session (smtpd_delay_reject), then the mail filters. */
  mail(sender: string, args: Readonly<Record<string, string | boolean>>): Promise<Outcome & { readonly sender: string }>
  rcpt(recipient: string): Promise<Outcome & { readonly recipients: ReadonlyArray<string> }>
  data(message: Buffer): Promise<MessageOutcome>
  /** RSET, or the transaction ended: forget the transaction's verdicts, keep the session's. */
  reset(): void
}

export interface FilterStage {
  readonly filters: ReadonlyArray<Filter>
  /** Hash of the filter configuration, recorded in every MessageFiltered. */
  readonly policyHash: string
  session(info: () => SessionInfo): SessionFilters
  close(): Promise<void>
}

type Log = (obj: Record<string, unknown>) => void

const replyOf = (action: Action, verdicts: ReadonlyArray<Verdict>): Reply.Reply | undefined => {
  if (!ends(action)) return undefined
  const own = verdicts.find((v) => v.action === action && v.reply)?.reply
  return own ?? (action === "reject" ? FilterReplies.rejected : FilterReplies.tempfailed)
}

export const make = (filters: ReadonlyArray<Filter>, policyHash: string, log: Log = () => {}): FilterStage => {
  /** One stage across the filters that have it; `next` feeds a filter's rewrite to the filters after it. */
  const run = async <C>(
    stage: Stage,
    session: SessionInfo,
    context: C,
    step: (f: Filter) => ((c: C) => StageResult | Promise<StageResult>) | undefined,
    next: (c: C, r: StageResult) => C,
    rewrites: Array<Rewrite>
  ): Promise<Outcome & { readonly context: C }> => {
    let action: Action = "accept"
    const verdicts: Array<Verdict> = []
    let c = context
    for (const f of filters) {
      const s = step(f)
      if (!s) continue
      let r: StageResult
      try {
        r = await s.call(f, c)
      } catch (e) {
        const detail = (e as Error)?.message ?? String(e)
        log({ event: "filter.error", filter: f.name, stage, session: session.id, error: detail })
        verdicts.push({ name: f.name, stage, result: "error", action: "tempfail", reply: FilterReplies.filterError, detail })
        action = "tempfail"
        break
      }
      for (const v of r.verdicts) {
        verdicts.push(v)
        action = moreSevere(action, v.action)
      }
      if (r.rewrites) rewrites.push(...r.rewrites)
      if (ends(action)) break
      c = next(c, r)
    }
    return { action, reply: replyOf(action, verdicts), verdicts, context: c }
  }

  return {
    filters,
    policyHash,
    close: async () => {
      await Promise.all(filters.map((f) => f.close?.()))
    },
    session: (info) => {
      const kept: Array<Verdict> = []
      let heloDone = false
      let transaction: Array<Verdict> = []
      let rewrites: Array<Rewrite> = []
      let sender = ""
      let accepted: Array<string> = []
      const keep = (into: Array<Verdict>, o: Outcome) => {
        // A refused command's verdicts concern that command only; the others follow the message.
        if (!ends(o.action)) into.push(...o.verdicts)
      }
      return {
        connect: async () => {
          const session = info()
          const o = await run(
            "connect",
            session,
            { session },
            (f) => f.connect,
            (c) => c,
            []
          )
          keep(kept, o)
          return o
        },
        mail: async (from, args) => {
          const session = info()
          if (!heloDone) {
            heloDone = true
            const h = await run(
              "helo",
              session,
              { session, helo: session.helo },
              (f) => f.helo,
              (c) => c,
              []
            )
            keep(kept, h)
            if (ends(h.action)) return { ...h, sender: from }
          }
          transaction = []
          rewrites = []
          accepted = []
          const o = await run(
            "mail",
            session,
            { session, sender: from, args },
            (f) => f.mail,
            (c, r) => ({ ...c, sender: r.sender ?? c.sender }),
            rewrites
          )
          keep(transaction, o)
          sender = o.context.sender
          return { ...o, sender }
        },
        rcpt: async (recipient) => {
          const session = info()
          const mark = rewrites.length
          const o = await run(
            "rcpt",
            session,
            { session, sender, recipient, accepted: [...accepted], expanded: [recipient] as ReadonlyArray<string> },
            (f) => f.rcpt,
            (c, r) => (r.recipients ? { ...c, expanded: r.recipients } : c),
            rewrites
          )
          if (ends(o.action)) {
            rewrites.length = mark
            return { ...o, recipients: [] }
          }
          keep(transaction, o)
          const fresh = o.context.expanded.filter((a) => !accepted.includes(a))
          accepted.push(...fresh)
          return { ...o, recipients: o.context.expanded }
        },
        data: async (message) => {
          const session = info()
          const before = [...kept, ...transaction]
          const o = await run(
            "data",
            session,
            { session, sender, recipients: [...accepted], message, verdicts: before },
            (f) => f.data,
            (c, r) => ({ ...c, message: r.message ?? c.message, verdicts: [...c.verdicts, ...r.verdicts] }),
            rewrites
          )
          const verdicts = [...before, ...o.verdicts]
          const action = verdicts.reduce<Action>((a, v) => moreSevere(a, v.action), "accept")
          return {
            ...o,
            message: o.context.message,
            record: { action, reply: replyOf(action, verdicts), verdicts, rewrites: [...rewrites], filterPolicy: policyHash }
          }
        },
        reset: () => {
          transaction = []
          rewrites = []
          accepted = []
          sender = ""
        }
      }
    }
  }
}
