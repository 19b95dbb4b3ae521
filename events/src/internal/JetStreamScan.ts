// A bulk read of a JetStream stream's sequence range for a scan of the whole log (replay's report, its snapshots): one
// ephemeral pull consumer (no acks, in memory), batches requested on a plain subscription one ahead of what is read,
// so the messages flow without a consumer per batch and without the client's per-message JetStream wrapper. Reads
// only; the consumer is deleted at the end (and expires by itself if the reader dies).
import { createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node"
import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream"

/** Messages asked for per pull request; the next is asked when half of one has come. */
const BATCH = 4096
/** Events per yielded array. */
const YIELD = 5000

/** The stream sequence of a delivered message, from its `$JS.ACK` reply subject (both token layouts). */
const seqOf = (reply: string): number => {
  const t = reply.split(".", 12)
  return Number(t.length >= 12 ? t[7] : t[5])
}

export async function* scanRange<T>(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  after: number,
  until: number,
  decode: (subject: string, seq: number, m: Msg) => ReadonlyArray<T>
): AsyncGenerator<ReadonlyArray<T>> {
  if (until <= after) return
  const ci = await jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: after + 1,
    inactive_threshold: 30_000_000_000,
    mem_storage: true,
    num_replicas: 1
  })
  const next = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${ci.name}`
  const inbox = createInbox()
  // Filled by the subscription's callback (no per-message promise), emptied by the generator; the next batch is asked
  // for when half of one has come and what is decoded but not yet taken stays under two batches' worth of events.
  let ready: Array<T> = []
  let failure: Error | undefined
  let done = false
  let wake: (() => void) | undefined
  let outstanding = 0
  let waiting = false
  const pull = () => {
    outstanding += BATCH
    nc.publish(next, JSON.stringify({ batch: BATCH, expires: 30_000_000_000 }), { reply: inbox })
  }
  const more = () => {
    if (!done && outstanding <= BATCH / 2 && ready.length < 2 * YIELD) pull()
    else if (!done && outstanding <= BATCH / 2) waiting = true
  }
  const sub = nc.subscribe(inbox, {
    callback: (err, m) => {
      if (done) return
      if (err) failure = err
      else if (m.data.length === 0 && m.headers && m.headers.code >= 300) {
        // A request ended (expired, or nothing more): ask again; the range is within the head, so more will come.
        if (m.headers.code === 404 || m.headers.code === 408) {
          outstanding = 0
          more()
        } else failure = new Error(`scan of ${stream}: ${m.headers.code} ${m.headers.description}`)
      } else {
        outstanding -= 1
        const seq = seqOf(m.reply ?? "")
        try {
          for (const e of decode(m.subject, seq, m)) ready.push(e)
        } catch (e) {
          failure = e as Error
        }
        if (seq >= until) done = true
        else more()
      }
      if (failure || done || ready.length >= YIELD) wake?.()
    }
  })
  try {
    pull()
    for (;;) {
      if (failure) throw failure
      if (ready.length >= YIELD || (done && ready.length > 0)) {
        const out = ready
        ready = []
        if (waiting) {
          waiting = false
          pull()
        }
        yield out
        continue
      }
      if (done) return
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
    }
  } finally {
    done = true
    sub.unsubscribe()
    await jsm.consumers.delete(stream, ci.name).catch(() => {})
  }
}
