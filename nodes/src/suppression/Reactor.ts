// Adds recipients to the suppression list from the facts in the log: a permanent bounce (SES's hard bounce, by
// publish/Ses.ts's classification) and, once a feedback report is matched, a complaint. Follows the log from its
// own checkpoint (<data_dir>/suppression.checkpoint), so a restart neither misses a bounce nor re-reads the log.
// Adding is idempotent (an address already listed adds nothing); must not touch any message's stream.
import { Reply, Suppression } from "@missive/core"
import { EventStore } from "@missive/events"
import { join } from "node:path"
import * as Follower from "../publish/Follower.js"
import { isHardBounce } from "../publish/Ses.js"
import type { Logger } from "../runtime/Log.js"
import type { List } from "./List.js"

export const start = async (d: {
  readonly events: EventStore.EventStore
  readonly list: List
  readonly dataDir: string
  readonly onBounce: boolean
  readonly onComplaint: boolean
  readonly log: Logger
}): Promise<Follower.Follower> =>
  Follower.start({
    name: "suppression",
    events: d.events,
    checkpoint: Follower.fileCheckpoint(join(d.dataDir, "suppression.checkpoint")),
    log: d.log,
    // Only these are read and decoded (a store with readAllOf skips the rest of the log unparsed).
    types: ["RecipientBounced", "ComplaintReceived"],
    handle: async (batch) => {
      const entries: Array<{ address: string; reason: "bounce" | "complaint"; source: string; detail: string }> = []
      for (const { stream, event: e } of batch)
        if (d.onBounce && e.type === "RecipientBounced" && isHardBounce(e.reply) && Suppression.isAddress(e.rcpt))
          entries.push({ address: e.rcpt, reason: "bounce" as const, source: EventStore.idOf(stream), detail: Reply.format(e.reply) })
        else if (d.onComplaint && e.type === "ComplaintReceived" && e.feedbackType !== "not-spam")
          for (const rcpt of e.rcpts.filter(Suppression.isAddress))
            entries.push({
              address: rcpt,
              reason: "complaint" as const,
              source: EventStore.idOf(stream),
              detail: `${e.feedbackType} report ${e.reportId}`
            })
      if (entries.length > 0) await d.list.add(entries, "missive")
    }
  })
