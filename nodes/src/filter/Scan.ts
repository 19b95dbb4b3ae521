// What the content scanners (rspamd, clamd, milters) share once their client has an outcome: the replies they give,
// and the one rule for a scanner that failed (down, slow, garbage, closed mid-reply): 451 by default, or with
// `on_failure: accept` the message passes with a header saying it was not scanned. Must not talk to any scanner.
import type { Reply } from "@missive/core"
import type { StageResult, Verdict } from "./Filter.js"
import * as Header from "./Header.js"

export type OnFailure = "tempfail" | "accept"

/** The scanners' replies (closed vocabulary, beside Filter.ts's FilterReplies). */
export const ScanReplies = {
  virus: (signature: string): Reply.Reply => ({ code: 554, enhanced: "5.7.0", text: `Message contains a virus (${signature})` }),
  spam: (text: string | undefined): Reply.Reply => ({ code: 550, enhanced: "5.7.1", text: text ?? "Spam message rejected" }),
  softReject: (text: string | undefined): Reply.Reply => ({ code: 451, enhanced: "4.7.1", text: text ?? "Try again later" }),
  greylisted: { code: 451, enhanced: "4.7.1", text: "Greylisted, try again later" },
  unavailable: (scanner: string): Reply.Reply => ({
    code: 451,
    enhanced: "4.3.0",
    text: `Content scanner ${scanner} unavailable, try again later`
  })
} as const

/** The header that marks a message accepted without a scan (on_failure: accept). */
export const UNSCANNED_HEADER = "X-Missive-Unscanned"

/** The result of a scanner that failed, by its `on_failure` policy. */
export const failed = (scanner: string, detail: string, onFailure: OnFailure, message: Buffer): StageResult => {
  const base: Verdict = { name: scanner, stage: "data", result: "temperror", action: "tempfail", detail }
  if (onFailure === "tempfail") return { verdicts: [{ ...base, reply: ScanReplies.unavailable(scanner) }] }
  return {
    verdicts: [{ ...base, action: "add-headers" }],
    message: Header.prepend(message, [[UNSCANNED_HEADER, `${scanner} (${detail})`]])
  }
}
