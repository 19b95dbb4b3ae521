// Complaints from feedback loops: a delivery to the configured feedback address (suppression.feedback_address) is
// read as an ARF report first (Arf.ts), matched to the message it reports, and recorded as ComplaintReceived on that
// message's stream through the command handler; then it is delivered as usual (the mailbox keeps the report). The
// suppression reactor and the event publisher take it from the log. A report that cannot be recorded now (store
// away) defers the delivery, so none is lost; one that is not a report, or names no message of ours, is only logged.
import { Reply } from "@missive/core"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Commands from "../scheduler/Commands.js"
import type { Deliverer } from "../scheduler/Driver.js"
import * as Arf from "./Arf.js"

export interface ComplaintDeps {
  readonly address: string
  readonly hostname: string
  readonly commands: Commands.Commands
  readonly clock: Clock
  readonly node: string
  readonly policyHash: string
  readonly log: Logger
}

/** Records the report in `body` on the message it is about; resolves with that message's id, or undefined. */
export const record = async (d: ComplaintDeps, body: Buffer, carrier: string): Promise<string | undefined> => {
  const report = Arf.parse(body.toString("utf8"))
  if (!report) {
    d.log("info", "feedback address: not a feedback report", { id: carrier })
    return undefined
  }
  for (const id of Arf.candidates(report.originalHeaders, d.hostname)) {
    const state = await d.commands.load(id)
    if (state.status === "empty") continue
    const viaReceived = Arf.receivedFor(report.originalHeaders, d.hostname)
    const rcpts =
      report.originalRcptTo.length > 0
        ? report.originalRcptTo
        : viaReceived !== undefined
          ? [viaReceived]
          : state.recipients.length === 1
            ? [state.recipients[0]!.address]
            : []
    const h = await d.commands.handle(
      id,
      Commands.command({
        type: "RecordComplaint",
        ctx: { at: d.clock.now(), node: d.node, policy: d.policyHash },
        reportId: report.reportId,
        rcpts,
        feedbackType: report.feedbackType,
        userAgent: report.userAgent,
        arrivalDate: report.arrivalDate
      })
    )
    d.log("info", "complaint", { id, report: carrier, rcpts, feedbackType: report.feedbackType, recorded: h.events.length > 0 })
    return id
  }
  d.log("warn", "feedback report names no message of ours", { id: carrier, reportId: report.reportId })
  return undefined
}

/** The deliverer with the feedback address's reports recorded before they are delivered. */
export const deliverer = (base: Deliverer, d: ComplaintDeps): Deliverer => ({
  deliver: async (destination, envelope, body, id) => {
    if (!envelope.to.some((r) => r.toLowerCase() === d.address)) return base.deliver(destination, envelope, body, id)
    try {
      await record(d, body, id)
    } catch (e) {
      d.log("warn", "feedback report not recorded yet; deferring its delivery", { id, error: String((e as Error)?.message ?? e) })
      return {
        host: "complaints",
        results: envelope.to.map((rcpt) => ({ rcpt, reply: Reply.Replies.localError("feedback report not recorded") }))
      }
    }
    return base.deliver(destination, envelope, body, id)
  }
})
