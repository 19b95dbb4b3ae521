// Connection reuse per destination key: at most `maxPerDestination` sessions open per key, idle ones kept for
// `idleMs` and reused after RSET, retired after `messagesPerConnection` messages or on any connection error.
// It must not interpret replies or retry a message: one send is one transaction, whatever it answers.
import { Reply } from "@missive/core"
import { allGet, type DeliveryResult, type Envelope } from "../Delivery.js"
import { Session, showEndpoint, type Endpoint, type SessionOptions } from "./Session.js"

export interface PoolOptions {
  readonly maxPerDestination: number
  readonly messagesPerConnection: number
  readonly idleMs: number
}

interface Entry {
  readonly session: Session
  used: number
  idleTimer: NodeJS.Timeout | undefined
  gone: boolean
}

interface Slot {
  open: number
  readonly idle: Entry[]
  readonly waiters: Array<() => void>
}

export interface Pool {
  send(key: string, hops: ReadonlyArray<Endpoint>, envelope: Envelope, body: Buffer): Promise<DeliveryResult>
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
    quitting.add(q)
    void q.finally(() => quitting.delete(q))
    wake(key, slot)
  }

  /** Opens a session on the first hop that answers; in opportunistic mode a failed TLS handshake is retried in clear. */
  const openFirst = async (hops: ReadonlyArray<Endpoint>): Promise<Session | { host: string; reply: Reply.Reply }> => {
    const failures: string[] = []
    for (const hop of hops) {
      let s = await Session.open(hop, session)
      if (!(s instanceof Session) && s.tlsFailed && session.tls === "opportunistic") {
        failures.push(s.detail)
        s = await Session.open(hop, { ...session, tls: "none" })
      }
      if (s instanceof Session) return s
      failures.push(s.detail)
    }
    const last = hops[hops.length - 1]
    return { host: last ? showEndpoint(last) : "", reply: Reply.Replies.connectFailed(failures.join("; ") || "no hops") }
  }

  const acquire = async (key: string, hops: ReadonlyArray<Endpoint>): Promise<Entry | { host: string; reply: Reply.Reply }> => {
    for (;;) {
      if (closed) return { host: "", reply: Reply.Replies.connectFailed("delivery client is shutting down") }
      const slot = slotOf(key)
      const idle = slot.idle.pop()
      if (idle) {
        clearTimeout(idle.idleTimer)
        if (await idle.session.reset()) return idle
        retire(key, slot, idle)
        continue
      }
      if (slot.open < pool.maxPerDestination) {
        slot.open++
        const s = await openFirst(hops)
        if (!(s instanceof Session)) {
          slot.open--
          wake(key, slot)
          return s
        }
        const entry: Entry = { session: s, used: 0, idleTimer: undefined, gone: false }
        s.onDead(() => {
          if (slot.idle.includes(entry)) retire(key, slot, entry)
        })
        return entry
      }
      await new Promise<void>((r) => slot.waiters.push(r))
    }
  }

  const release = (key: string, entry: Entry): void => {
    const slot = slotOf(key)
    if (closed || !entry.session.isAlive || entry.used >= pool.messagesPerConnection || pool.idleMs <= 0) {
      retire(key, slot, entry)
      return
    }
    entry.idleTimer = setTimeout(() => retire(key, slot, entry), pool.idleMs)
    entry.idleTimer.unref()
    slot.idle.push(entry)
    wake(key, slot)
  }

  const transact = async (key: string, hops: ReadonlyArray<Endpoint>, envelope: Envelope, body: Buffer): Promise<DeliveryResult> => {
    if (envelope.to.length === 0) return { host: "", results: [] }
    const got = await acquire(key, hops)
    if (!("session" in got)) return { host: got.host, results: allGet(envelope.to, got.reply) }
    const results = await got.session.transact(envelope, body)
    got.used++
    const tls = got.session.secure
    release(key, got)
    return { host: got.session.host, results, tls }
  }

  return {
    send: (key, hops, envelope, body) => {
      const p = transact(key, hops, envelope, body)
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
