// Connection reuse per destination key: at most `maxPerDestination` sessions open per key, idle ones kept for
// `idleMs` and reused — with RSET first only when the last transaction did not complete (after the reply to the data
// the server's state is already reset, RFC 5321 §4.1.1.4); a session reused without RSET that the server had closed
// before taking the message is sent on again once, on a new session — retired after `messagesPerConnection` messages
// (the send's own, a site's, else the pool's) or on any connection error.
// It must not interpret replies or retry a message the server answered: one send is one transaction, whatever it answers.
import { Reply, type Trace } from "@missive/core"
import { allGet, type DeliveryResult, type Envelope } from "../Delivery.js"
import { Session, showEndpoint, type Endpoint, type SessionOptions, type VerifyPolicy } from "./Session.js"

export interface PoolOptions {
  readonly maxPerDestination: number
  readonly messagesPerConnection: number
  readonly idleMs: number
}

interface Entry {
  readonly session: Session
  used: number
  /** Taken from the idle list without an RSET: its first reply is the proof that it still works. */
  unprobed: boolean
  idleTimer: NodeJS.Timeout | undefined
  gone: boolean
  /** Its QUIT once retired: resolves when the session has closed. */
  quit?: Promise<void> | undefined
}

interface Slot {
  open: number
  readonly idle: Entry[]
  readonly waiters: Array<() => void>
}

/** What a TLS policy asks of one send: hops it already excluded (recorded, never dialled) and the check to apply. */
export interface SendPolicy {
  readonly verify?: VerifyPolicy | undefined
  readonly excluded?: ReadonlyArray<Trace.HopTried> | undefined
  /** The egress address to connect from and the EHLO name to give there. */
  readonly egress?: { readonly address: string; readonly ehlo: string } | undefined
  /** Messages over one session of this key before it is closed, over the pool's `messagesPerConnection` (a site's own). */
  readonly messagesPerConnection?: number | undefined
}

type Failed = { host: string; reply: Reply.Reply; hops: ReadonlyArray<Trace.HopTried>; tls?: Trace.TlsOutcome | undefined }

export interface Pool {
  /** Sessions are pooled by `key`: a caller that sends under different policies gives each its own key. */
  send(key: string, hops: ReadonlyArray<Endpoint>, envelope: Envelope, body: Buffer, policy?: SendPolicy): Promise<DeliveryResult>
  close(): Promise<void>
}

export const makePool = (session: SessionOptions, pool: PoolOptions): Pool => {
  const slots = new Map<string, Slot>()
  const quitting = new Set<Promise<void>>()
  const active = new Set<Promise<unknown>>()
  let closed = false

  const slotOf = (key: string): Slot => {
    let s = slots.get(key)
    if (!s) slots.set(key, (s = { open: 0, idle: [], waiters: [] }))
    return s
  }

  const wake = (key: string, slot: Slot): void => {
    const next = slot.waiters.shift()
    if (next) next()
    else if (slot.open === 0 && slot.idle.length === 0) slots.delete(key)
  }

  /** Takes an entry out of the pool for good: QUIT (if still alive), free its place, let a waiter in. */
  const retire = (key: string, slot: Slot, entry: Entry): void => {
    if (entry.gone) return
    entry.gone = true
    clearTimeout(entry.idleTimer)
    const i = slot.idle.indexOf(entry)
    if (i >= 0) slot.idle.splice(i, 1)
    slot.open--
    const q = entry.session.quit()
    entry.quit = q
    quitting.add(q)
    void q.finally(() => quitting.delete(q))
    wake(key, slot)
  }

  /**
   * Opens a session on the first hop that answers; in opportunistic mode (and under a policy that only records) a
   * failed TLS handshake is retried in clear. Every hop tried is recorded with its outcome.
   */
  const openFirst = async (
    hops: ReadonlyArray<Endpoint>,
    policy: SendPolicy
  ): Promise<{ session: Session; tried: ReadonlyArray<Trace.HopTried> } | Failed> => {
    const egressed: SessionOptions = policy.egress
      ? { ...session, hostname: policy.egress.ehlo, localAddress: policy.egress.address }
      : session
    const options: SessionOptions = policy.verify ? { ...egressed, tls: "opportunistic", verify: policy.verify } : egressed
    const failures: string[] = []
    const tried: Trace.HopTried[] = [...(policy.excluded ?? [])]
    let lastTls: Trace.TlsOutcome | undefined
    const record = (hop: Endpoint, outcome: Trace.HopOutcome, detail?: string): void =>
      void tried.push({ hop: showEndpoint(hop), ...(hop.name ? { name: hop.name } : {}), outcome, ...(detail ? { detail } : {}) })
    for (const hop of hops) {
      let s = await Session.open(hop, options)
      if (!(s instanceof Session) && s.tlsFailed && options.tls === "opportunistic" && !options.verify?.enforce) {
        failures.push(s.detail)
        record(hop, "tls-failed", s.detail)
        lastTls = s.tls ?? lastTls
        s = await Session.open(hop, { ...options, tls: "none", verify: undefined })
      }
      if (s instanceof Session) {
        record(hop, "connected")
        return { session: s, tried }
      }
      failures.push(s.detail)
      record(hop, s.tlsFailed ? "tls-failed" : "connect-failed", s.detail)
      lastTls = s.tls ?? lastTls
    }
    const last = hops[hops.length - 1]
    const excludedOnly = failures.length === 0 && tried.length > 0
    const why = excludedOnly
      ? tried.map((h) => `${h.name ?? h.hop}: ${h.detail ?? h.outcome}`).join("; ")
      : failures.join("; ") || "no hops"
    return {
      host: last ? showEndpoint(last) : "",
      // a policy that requires authenticated TLS, or one that excluded every hop, is why nothing was delivered
      reply: policy.verify?.enforce || excludedOnly ? Reply.Replies.tlsPolicyFailed(why) : Reply.Replies.connectFailed(why),
      hops: tried,
      ...(lastTls ? { tls: lastTls } : {})
    }
  }

  const acquire = async (
    key: string,
    hops: ReadonlyArray<Endpoint>,
    policy: SendPolicy
  ): Promise<{ entry: Entry; tried: ReadonlyArray<Trace.HopTried> } | Failed> => {
    for (;;) {
      if (closed) return { host: "", reply: Reply.Replies.connectFailed("delivery client is shutting down"), hops: [] }
      const slot = slotOf(key)
      const idle = slot.idle.pop()
      if (idle) {
        clearTimeout(idle.idleTimer)
        idle.unprobed = idle.session.reusable
        if (idle.unprobed || (await idle.session.reset())) {
          const e = idle.session.endpoint
          return { entry: idle, tried: [{ hop: showEndpoint(e), ...(e.name ? { name: e.name } : {}), outcome: "reused" }] }
        }
        retire(key, slot, idle)
        continue
      }
      if (slot.open < pool.maxPerDestination) {
        slot.open++
        const s = await openFirst(hops, policy)
        if (!("session" in s)) {
          slot.open--
          wake(key, slot)
          return s
        }
        const entry: Entry = { session: s.session, used: 0, unprobed: false, idleTimer: undefined, gone: false }
        s.session.onDead(() => {
          if (slot.idle.includes(entry)) retire(key, slot, entry)
        })
        return { entry, tried: s.tried }
      }
      await new Promise<void>((r) => slot.waiters.push(r))
    }
  }

  const release = (key: string, entry: Entry, max: number): void => {
    const slot = slotOf(key)
    if (closed || !entry.session.isAlive || entry.used >= max || pool.idleMs <= 0) {
      retire(key, slot, entry)
      return
    }
    entry.idleTimer = setTimeout(() => retire(key, slot, entry), pool.idleMs)
    entry.idleTimer.unref()
    slot.idle.push(entry)
    wake(key, slot)
  }

  const transact = async (
    key: string,
    hops: ReadonlyArray<Endpoint>,
    envelope: Envelope,
    body: Buffer,
    policy: SendPolicy
  ): Promise<DeliveryResult> => {
    if (envelope.to.length === 0) return { host: "", results: [] }
    const got = await acquire(key, hops, policy)
    if (!("entry" in got)) {
      const trace: Trace.Trace = { hops: got.hops, ...(got.tls ? { tls: got.tls } : {}) }
      return { host: got.host, results: allGet(envelope.to, got.reply), trace }
    }
    const { entry } = got
    const { results, closedBefore } = await entry.session.transaction(envelope, body)
    if (closedBefore && entry.unprobed) {
      // The peer had closed the idle session (our MAIL met the close): it never took this message; a new session.
      release(key, entry, 0)
      return transact(key, hops, envelope, body, policy)
    }
    entry.unprobed = false
    entry.used++
    const tls = entry.session.secure
    release(key, entry, policy.messagesPerConnection ?? pool.messagesPerConnection)
    // A session retired after its last message is closed before the send returns: the caller's cluster slot is
    // then given back only once the receiver has one session fewer (QUIT waits at most 2 s).
    if (entry.quit) await entry.quit
    return { host: entry.session.host, results, tls, trace: { hops: got.tried, tls: entry.session.tls } }
  }

  return {
    send: (key, hops, envelope, body, policy = {}) => {
      const p = transact(key, hops, envelope, body, policy)
      active.add(p)
      void p.finally(() => active.delete(p))
      return p
    },
    close: async () => {
      closed = true
      for (const [key, slot] of [...slots]) {
        for (const e of [...slot.idle]) retire(key, slot, e)
        for (const w of slot.waiters.splice(0)) w()
      }
      await Promise.allSettled([...active])
      await Promise.allSettled([...quitting])
    }
  }
}
