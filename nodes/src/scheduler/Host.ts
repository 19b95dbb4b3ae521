// The scheduler's host: polls the due-time index and claims due messages, activates each (fresh from intake, carried
// with its work entry, or due), lets the driver run core's drive plan, and reschedules a drive that failed or read
// an empty stream within seconds (backoff 1 s .. 5 s), counting and logging it. Decides nothing itself.
import { Drive, Message, type Policy } from "@missive/core"
import type { BodyStore, EventStore, Work } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import type { Clock, Random } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Commands from "./Commands.js"
import * as Driver from "./Driver.js"
import type { Limiter } from "./Limiter.js"
import type { Shaping } from "./Shaping.js"

export type { Carried, Deliverer, Injector, RouteOutcome, Router } from "./Driver.js"

export interface HostDeps {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: Work.Work
  readonly clock: Clock
  readonly random: Random
  readonly ids: { next(): string }
  readonly log: Logger
  readonly node: string
  readonly hostname: string
  readonly policyHash: string
  readonly retry: Policy.RetryPolicy
  readonly router: Driver.Router
  readonly deliverer: Driver.Deliverer
  readonly limiter: Limiter
  readonly shaping?: Shaping | undefined
  readonly leaseMs: number
  readonly pollMs: number
  readonly maxActive: number
  /** Postfix's delay_warning_time (null: no delay notices). */
  readonly delayWarningMs?: number | null | undefined
  /** Read-only observer: the state the host holds after each of its appends (replay tests compare it with the log's fold). */
  readonly onState?: ((id: string, state: Message.State) => void) | undefined
}

export interface Counters {
  /** Drives whose stream read back empty with nothing carried: retried, the work entry kept. */
  readonly emptyReads: number
  /** Drives that failed (store, decider refusal, DSN not queued) and were rescheduled with a backoff. */
  readonly driveFailures: number
  /** Appends that met a newer stream version and were decided again on a fresh read. */
  readonly conflicts: number
}

export interface Host {
  /** Intake's hand-off: a message just committed. */
  onReceived(id: string, state: Message.State, body: Buffer): void
  /** Intake for DSNs; set after construction (intake and host refer to each other). */
  setInjector(i: Driver.Injector): void
  /** An operator command on one message (hold, release, retry now, delete, bounce), serialised with its driver. */
  operate(id: string, op: Operation, by: string): Promise<OperateResult>
  /** Drives one message now (operator "retry now", tests). */
  drive(id: string): Promise<void>
  start(): Promise<void>
  /** Stops polling and waits (up to `graceMs`) for running deliveries; gives back the leases. */
  stop(graceMs: number): Promise<void>
  active(): number
  counters(): Counters
}

export type Operation = "hold" | "release" | "retry" | "delete" | "bounce"

export type OperateResult =
  { readonly ok: true; readonly events: ReadonlyArray<Message.EventType> } | { readonly ok: false; readonly error: string }

/** Delay before the n-th consecutive retry of a failed or empty drive: 1 s, 2 s, 4 s … at most 5 s (a store that was away is back within seconds of its recovery). */
export const retryDelay = (n: number): number => Math.min(5_000, 1000 * 2 ** Math.max(0, n - 1))

export const make = (d: HostDeps): Host => {
  const active = new Set<string>()
  const again = new Set<string>()
  const failures = new Map<string, number>()
  const counts = { emptyReads: 0, driveFailures: 0, conflicts: 0 }
  let timer: NodeJS.Timeout | undefined
  let stopping = false
  let polling = false
  let backlog = false
  let inject: Driver.Injector | undefined

  const base = Commands.make(d.events)
  const commands: Commands.Commands = {
    load: base.load,
    handle: (id, decide, opts = {}) =>
      base.handle(id, decide, {
        ...opts,
        onConflict: () => {
          counts.conflicts += 1
          opts.onConflict?.()
        }
      })
  }
  const driver = Driver.make({ ...d, commands, injector: () => inject })

  const later = async (id: string, what: "empty" | "failed", extra: Record<string, unknown>) => {
    const n = (failures.get(id) ?? 0) + 1
    failures.set(id, n)
    const inMs = retryDelay(n)
    if (what === "empty") {
      counts.emptyReads += 1
      d.log("warn", "empty read: the message's stream has no events; work kept, retrying", { id, inMs, tries: n })
    } else {
      counts.driveFailures += 1
      d.log("error", "drive failed; retrying", { id, inMs, tries: n, ...extra })
    }
    await d.work.schedule(id, d.clock.now() + inMs).catch(() => {})
  }

  const drive = async (id: string, start?: { fresh?: Message.State; carried?: Driver.Carried }): Promise<void> => {
    if (active.has(id)) {
      again.add(id)
      return
    }
    active.add(id)
    try {
      const r = await driver.driveOnce(id, start)
      if (r === "empty") await later(id, "empty", {})
      else failures.delete(id)
    } catch (e) {
      await later(id, "failed", { error: String((e as Error)?.stack ?? e) })
    } finally {
      // A passivated message keeps nothing in memory: its body is read from the store on its next drive.
      driver.forget(id)
      active.delete(id)
      if (again.delete(id) && !stopping) void drive(id)
      // More due work waits in the index than the last poll could take: fetch it as soon as there is room.
      if (backlog && !stopping && active.size < d.maxActive / 2) kick()
    }
  }

  const kick = () => {
    if (timer) clearTimeout(timer)
    timer = setTimeout(poll, 0)
  }

  const poll = async () => {
    timer = undefined
    if (stopping || polling) return
    polling = true
    let delay = d.pollMs
    try {
      const room = Math.min(d.maxActive - active.size, 500)
      if (room > 0) {
        const now = d.clock.now()
        const items = await d.work.claim(now, room, d.node, now + d.leaseMs)
        for (const item of items)
          void drive(
            item.id,
            item.carried ? { carried: item.carried, ...(item.unlogged ? { fresh: Message.initialState } : {}) } : undefined
          )
        backlog = items.length === room
        if (backlog) delay = 10
      }
      const next = await d.work.nextDue()
      if (next !== undefined) delay = Math.max(10, Math.min(delay, next - d.clock.now()))
    } catch (e) {
      d.log("error", "work poll failed", { error: String(e) })
    } finally {
      polling = false
      if (!stopping) timer = setTimeout(poll, delay)
    }
  }

  const operate = async (id: string, op: Operation, by: string): Promise<OperateResult> => {
    // Wait for a running drive of this message to end, then hold the message while deciding.
    for (let i = 0; active.has(id); i++) {
      if (i > 3000) return { ok: false, error: `message ${id} is busy` }
      await new Promise((r) => setTimeout(r, 10))
    }
    active.add(id)
    try {
      const c: Message.Ctx = { at: d.clock.now(), node: d.node, policy: d.policyHash }
      const command: Message.Command =
        op === "hold"
          ? { type: "Hold", ctx: c, by, reason: "operator" }
          : op === "release"
            ? { type: "Release", ctx: c, by }
            : op === "retry"
              ? { type: "RetryNow", ctx: c, by }
              : op === "delete"
                ? { type: "Delete", ctx: c, by }
                : { type: "Bounce", ctx: c, by, dsnId: d.ids.next() }
      let h: Commands.Handled<undefined>
      try {
        h = await commands.handle(id, (s) =>
          s.status === "empty" ? E.left({ _tag: "MessageNotFound" as const }) : Commands.command(command)(s)
        )
      } catch (e) {
        if (!(e instanceof Commands.Refused)) throw e
        return { ok: false, error: e.error._tag === "MessageNotFound" ? `no message ${id}` : e.error._tag }
      }
      d.log("info", "operator", { id, op, by, events: h.events.map((e) => e.type) })
      // What follows is the drive plan's: a held message parks until its lifetime ends; anything due runs now.
      const plan = Drive.next(h.state, d.clock.now(), d.retry)
      if (plan.kind === "finish") await driver.finish(h.state as Message.State & { status: "completed" })
      else if (plan.kind === "park" || plan.kind === "wait") await d.work.schedule(id, plan.until)
      else if (plan.kind !== "none") await d.work.schedule(id, d.clock.now())
      return { ok: true, events: h.events.map((e) => e.type) }
    } finally {
      active.delete(id)
      kick()
    }
  }

  return {
    operate,
    onReceived: (id, state, body) => {
      if (stopping) return
      if (active.size >= d.maxActive) {
        void d.work.schedule(id, d.clock.now()).catch(() => {})
        return
      }
      driver.remember(id, body)
      void drive(id, { fresh: state })
    },
    setInjector: (i) => void (inject = i),
    drive: (id) => drive(id),
    start: async () => {
      await d.work.releaseAll(d.node)
      d.work.onAvailable?.(kick)
      kick()
    },
    stop: async (graceMs) => {
      stopping = true
      if (timer) clearTimeout(timer)
      const deadline = d.clock.now() + graceMs
      while (active.size > 0 && d.clock.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      await d.work.releaseAll(d.node).catch(() => {})
    },
    active: () => active.size,
    counters: () => ({ ...counts })
  }
}
