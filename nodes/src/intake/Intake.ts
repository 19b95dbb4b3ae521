// The intake role: stamps trace headers, stores the body and appends MessageReceived, then hands the message
// to the actor host. Resolves only when the body, the event and the work entry are committed (fsync'd) — in
// one SQLite group commit, or in cluster mode in one replicated publish (`commit`).
// Must not deliver. A slow or full store gives 451/452, never 250.
import { Message, Policy, Reply } from "@missive/core"
import { BodyStore, EventStore, type Work } from "@missive/events"
import { statfs } from "node:fs/promises"
import * as E from "fp-ts/lib/Either.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import { stamp } from "./Headers.js"

export interface IntakeDeps {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: Work.Work
  readonly clock: Clock
  readonly ids: { next(): string }
  readonly log: Logger
  readonly node: string
  readonly hostname: string
  readonly policyHash: string
  readonly dataDir: string
  readonly minFreeBytes: number
  readonly leaseMs: number
  /** Called after the commit with the fresh message's state and body; the host decides whether to drive it now. */
  readonly onReceived: (id: string, state: Message.State, body: Buffer) => void
  /**
   * Cluster mode: the accept commit is this one write (the events and the body in one replicated stream message,
   * nodes/src/cluster/Runtime.ts); the message reaches a driver through the work stream's consumer, not onReceived.
   */
  /** `keyed`: the id was given (a DSN): a retried commit of it must be recognised, so it is not batched. */
  readonly commit?:
    ((id: string, events: ReadonlyArray<Message.Event>, body: Buffer, digest: string, keyed: boolean) => Promise<void>) | undefined
}

export interface Incoming {
  readonly sender: string
  readonly recipients: ReadonlyArray<string>
  readonly body: Buffer
  readonly client: Message.Client
  /** Set for DSNs Missive generates itself (id decided beforehand, no trace stamping by a client). */
  readonly id?: string | undefined
  readonly dsnOf?: string | undefined
  /** The filter stage's outcome, recorded as MessageFiltered in the same commit (quarantine: the message is held). */
  readonly filtered?: Message.FilterOutcome | undefined
}

export interface Intake {
  accept(m: Incoming): Promise<Reply.Reply & { id?: string }>
  /** Records a message the filter stage refused at the end of DATA: its MessageFiltered alone, under a new id. */
  recordRejection(
    filtered: Message.FilterOutcome,
    m: { sender: string; recipients: ReadonlyArray<string>; client: Message.Client }
  ): Promise<void>
}

export const make = (d: IntakeDeps): Intake => {
  let lowSpaceUntil = 0
  let lowSpace = false
  const checkSpace = async (): Promise<boolean> => {
    const now = d.clock.now()
    if (now < lowSpaceUntil) return lowSpace
    lowSpaceUntil = now + 1000
    try {
      const s = await statfs(d.dataDir)
      lowSpace = s.bavail * s.bsize < d.minFreeBytes
    } catch {
      lowSpace = false
    }
    return lowSpace
  }

  return {
    recordRejection: async (filtered, m) => {
      const id = d.ids.next()
      const decision = Message.decide(
        { type: "RecordRejection", ctx: { at: d.clock.now(), node: d.node, policy: d.policyHash }, id, filtered },
        Message.initialState
      )
      if (E.isLeft(decision)) return
      try {
        await d.events.append(EventStore.streamOf(id), 0, decision.right)
      } catch (e) {
        // The refusal stands whether or not it could be recorded; the log keeps it.
        d.log("warn", "filter rejection not recorded", { id, error: String(e) })
      }
      d.log("info", "rejected by filter", {
        id,
        from: m.sender,
        rcpts: m.recipients.length,
        client: m.client.ip,
        action: filtered.action,
        reply: filtered.reply ? Reply.format(filtered.reply) : undefined
      })
    },
    accept: async (m) => {
      if (await checkSpace()) {
        d.log("warn", "intake refused: low disk space", { dataDir: d.dataDir })
        return Reply.Replies.storeFull
      }
      const id = m.id ?? d.ids.next()
      const at = d.clock.now()
      const body =
        m.dsnOf !== undefined
          ? m.body
          : stamp(m.body, {
              id,
              hostname: d.hostname,
              helo: m.client.helo,
              ip: m.client.ip,
              tls: m.client.tls,
              user: m.client.user,
              recipients: m.recipients,
              at
            })
      // The put, the append and the work entry are queued in one turn of the event loop: they share one commit.
      const digest = BodyStore.digestOf(body)
      const decision = Message.decide(
        {
          type: "Receive",
          ctx: { at, node: d.node, policy: d.policyHash },
          id,
          sender: m.sender,
          recipients: m.recipients,
          size: body.length,
          digest,
          client: m.client,
          dsnOf: m.dsnOf,
          filtered: m.filtered
        },
        Message.initialState
      )
      if (E.isLeft(decision)) {
        return decision.left._tag === "NoRecipients"
          ? { code: 554, enhanced: "5.5.1", text: "No valid recipients" }
          : Reply.Replies.storeBusy
      }
      if (d.commit) {
        try {
          await d.commit(id, decision.right, body, digest, m.id !== undefined)
        } catch (e) {
          d.log("error", "intake commit failed", { id, error: String(e) })
          return (e as { full?: boolean }).full ? Reply.Replies.storeFull : Reply.Replies.storeBusy
        }
        d.log("info", "received", {
          id,
          from: m.sender,
          rcpts: m.recipients.length,
          size: body.length,
          client: m.client.ip,
          dsnOf: m.dsnOf
        })
        return { ...Reply.Replies.queued(id), id }
      }
      try {
        await Promise.all([
          d.bodies.put(body, digest),
          d.events.append(EventStore.streamOf(id), 0, decision.right),
          d.work.schedule(id, at, { owner: d.node, until: at + d.leaseMs })
        ])
      } catch (e) {
        const tag = (e as { _tag?: string })._tag
        if (tag === "WrongExpectedVersion" && m.id !== undefined) return { ...Reply.Replies.queued(id), id }
        d.log("error", "intake commit failed", { id, error: String(e) })
        return (e as { full?: boolean }).full ? Reply.Replies.storeFull : Reply.Replies.storeBusy
      }
      d.log("info", "received", { id, from: m.sender, rcpts: m.recipients.length, size: body.length, client: m.client.ip, dsnOf: m.dsnOf })
      d.onReceived(id, Message.fold(decision.right), body)
      return { ...Reply.Replies.queued(id), id }
    }
  }
}

export const policyHashOf = (policy: unknown): string => Policy.hash(policy)
