// The delivery role in a thread of its own (`delivery.thread: worker`; the default is the main thread): the same deliverer
// (`makeDeliverer`: SMTP pool, LMTP, Maildir, DANE, MTA-STS) runs in a worker thread, and the main thread — SMTP
// ingress, intake, the scheduler and the decider — hands it one attempt at a time and gets its replies back, so that
// the node's work is spread over two cores. A worker is a place the role runs, not a second copy of it: what the
// deliverer asks of the node (TXT lookups through the node's resolver, its log, the lease check before the final dot)
// is asked of the main thread over the same channel. Must not decide anything: it carries attempts and replies.
import { Worker } from "node:worker_threads"
import type { MessagePort } from "node:worker_threads"
import type { Route } from "@missive/core"
import type { Config } from "../config/Config.js"
import type { DnsResolver } from "../router/Resolver.js"
import type { Level, Logger } from "../runtime/Log.js"
import { systemClock } from "../runtime/Clock.js"
import * as Limiter from "../scheduler/Limiter.js"
import type { DeliveryResult } from "./Delivery.js"
import { makeDeliverer, type Deliverer } from "./Deliverer.js"

/** What the worker is started with (structured-cloned). */
interface Setup {
  readonly config: Config
  readonly dataDir: string | undefined
  /** Whether the node's resolver answers TXT (MTA-STS discovery): asked of the main thread. */
  readonly txt: boolean
}

/** Main thread → worker. */
type Down =
  | {
      readonly t: "deliver"
      readonly job: number
      readonly destination: Route.Destination
      readonly from: string
      readonly to: ReadonlyArray<string>
      readonly fenced: boolean
      readonly body: Uint8Array
      readonly id: string
    }
  | { readonly t: "fence"; readonly job: number; readonly ok: boolean }
  | { readonly t: "txt"; readonly req: number; readonly records?: ReadonlyArray<string>; readonly rcode?: string; readonly error?: string }
  | { readonly t: "close" }

/** Worker → main thread. */
type Up =
  | { readonly t: "done"; readonly job: number; readonly result: DeliveryResult }
  | { readonly t: "failed"; readonly job: number; readonly message: string }
  | { readonly t: "fence"; readonly job: number }
  | { readonly t: "txt"; readonly req: number; readonly name: string }
  | { readonly t: "log"; readonly level: Level; readonly msg: string; readonly fields?: Record<string, unknown> | undefined }
  | { readonly t: "closed" }
  | { readonly t: "ready" }

export interface ThreadDeps {
  readonly resolver?: DnsResolver | undefined
  readonly dataDir?: string | undefined
  readonly log?: Logger | undefined
}

// The worker runs compiled code: under the test runner (src/, TypeScript) its entry is the one built into dist/.
const entry = (): URL => {
  const here = new URL("./internal/DeliveryWorker.mjs", import.meta.url)
  return here.pathname.includes("/nodes/src/") ? new URL(here.href.replace("/nodes/src/", "/nodes/dist/")) : here
}

/**
 * A deliverer whose attempts run in a worker thread. `ready` settles once the thread has loaded and built its
 * deliverer (a node starts listening only then, so that its first deliveries do not wait on the thread's start), or
 * fails if the thread dies first.
 */
export const inWorker = (config: Config, deps: ThreadDeps = {}): Deliverer & { readonly ready: Promise<void> } => {
  const log = deps.log ?? (() => undefined)
  const setup: Setup = { config, dataDir: deps.dataDir, txt: deps.resolver?.txt !== undefined }
  // (not the parent's flags: a test runner's "source" condition would point the worker at TypeScript it cannot load)
  const worker = new Worker(entry(), {
    workerData: setup,
    execArgv: process.execArgv.filter((a) => !a.startsWith("--conditions") && a !== "-C")
  })
  const jobs = new Map<
    number,
    {
      resolve: (r: DeliveryResult) => void
      reject: (e: Error) => void
      fence?: (() => boolean) | undefined
    }
  >()
  let next = 0
  let dead: Error | undefined
  let closed: (() => void) | undefined
  let stopping = false
  let started!: { resolve: () => void; reject: (e: Error) => void }
  const ready = new Promise<void>((resolve, reject) => (started = { resolve, reject }))
  ready.catch(() => undefined) // a caller that never waits for it still sees the failure through deliver()
  const post = (m: Down, transfer?: ReadonlyArray<ArrayBuffer>): void => worker.postMessage(m, transfer)
  worker.on("message", (m: Up) => {
    switch (m.t) {
      case "done":
      case "failed": {
        const j = jobs.get(m.job)
        jobs.delete(m.job)
        if (m.t === "done") j?.resolve(m.result)
        else j?.reject(new Error(m.message))
        return
      }
      case "fence": {
        const j = jobs.get(m.job)
        return post({ t: "fence", job: m.job, ok: j?.fence ? j.fence() : j !== undefined })
      }
      case "txt": {
        const txt = deps.resolver?.txt
        if (!txt) return post({ t: "txt", req: m.req, error: "no TXT lookups" })
        txt.call(deps.resolver, m.name).then(
          (r) => post({ t: "txt", req: m.req, records: r.records, rcode: r.rcode }),
          (e: unknown) => post({ t: "txt", req: m.req, error: e instanceof Error ? e.message : String(e) })
        )
        return
      }
      case "log":
        return log(m.level, m.msg, m.fields)
      case "closed":
        return closed?.()
      case "ready":
        return started.resolve()
    }
  })
  // A worker that dies (a bug, out of memory) fails the attempts it held (each is a failed drive, retried) and every
  // later one: the node logs it; nothing is reported as delivered that was not.
  const fail = (e: Error): void => {
    if (dead) return
    dead = e
    started.reject(e)
    if (stopping) return closed?.()
    log("error", "delivery thread stopped", { error: e.message })
    for (const j of jobs.values()) j.reject(e)
    jobs.clear()
    closed?.()
  }
  worker.on("error", fail)
  worker.on("exit", (code) => fail(new Error(`delivery thread exited (${code})`)))
  return {
    ready,
    deliver: (destination, envelope, body, id) => {
      if (dead) return Promise.reject(dead)
      const job = next++
      return new Promise<DeliveryResult>((resolve, reject) => {
        const fence = (envelope as { fence?: (() => boolean) | undefined }).fence
        jobs.set(job, { resolve, reject, fence })
        // A Buffer is often a view of a larger ArrayBuffer (Node's pool, a segment read), and a clone copies all of it:
        // the body goes over as a copy of its own bytes, moved rather than cloned.
        const own = new Uint8Array(body)
        post({ t: "deliver", job, destination, from: envelope.from, to: envelope.to, fenced: fence !== undefined, body: own, id }, [
          own.buffer
        ])
      })
    },
    close: () => {
      if (dead) return Promise.resolve()
      stopping = true
      return new Promise<void>((resolve) => {
        closed = resolve
        post({ t: "close" })
      }).then(() => worker.terminate().then(() => undefined))
    }
  }
}

/** The worker's side: the deliverer, with the node's services asked of the main thread. */
export const serve = (port: MessagePort, setup: Setup): void => {
  const up = (m: Up): void => port.postMessage(m)
  const fences = new Map<number, (ok: boolean) => void>()
  const lookups = new Map<number, { resolve: (r: { records: ReadonlyArray<string>; rcode: string }) => void; reject: (e: Error) => void }>()
  let nextReq = 0
  const resolver: DnsResolver | undefined = setup.txt
    ? {
        mx: () => Promise.reject(new Error("not asked in the delivery thread")),
        a: () => Promise.reject(new Error("not asked in the delivery thread")),
        aaaa: () => Promise.reject(new Error("not asked in the delivery thread")),
        txt: (name) =>
          new Promise((resolve, reject) => {
            const req = nextReq++
            lookups.set(req, { resolve, reject })
            up({ t: "txt", req, name })
          })
      }
    : undefined
  const sites = Limiter.sitesOf(setup.config)
  const deliverer = makeDeliverer(setup.config, {
    resolver,
    dataDir: setup.dataDir,
    clock: systemClock,
    log: (level, msg, fields) => up({ t: "log", level, msg, fields }),
    sites
  })
  up({ t: "ready" })
  port.on("message", (m: Down) => {
    switch (m.t) {
      case "deliver": {
        const body = Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength)
        const fence = m.fenced
          ? () =>
              new Promise<boolean>((resolve) => {
                fences.set(m.job, resolve)
                up({ t: "fence", job: m.job })
              })
          : undefined
        deliverer.deliver(m.destination, { from: m.from, to: m.to, ...(fence ? { fence } : {}) }, body, m.id).then(
          (result) => up({ t: "done", job: m.job, result }),
          (e: unknown) => up({ t: "failed", job: m.job, message: e instanceof Error ? e.message : String(e) })
        )
        return
      }
      case "fence": {
        const f = fences.get(m.job)
        fences.delete(m.job)
        return f?.(m.ok)
      }
      case "txt": {
        const l = lookups.get(m.req)
        lookups.delete(m.req)
        if (m.error !== undefined) l?.reject(new Error(m.error))
        else l?.resolve({ records: m.records ?? [], rcode: m.rcode ?? "NOERROR" })
        return
      }
      case "close":
        void deliverer.close().then(() => up({ t: "closed" }))
        return
    }
  })
}
