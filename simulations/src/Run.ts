// One simulation run: starts the world and the target, drives the planned traffic, samples progress, waits for every
// outcome (or the drain limit), stops everything in reverse order and returns the report with the loss check done.
// Never decides pass or fail itself beyond `counts.lost`; the CLI and the tests do.
import * as Ledger from "./Ledger.js"
import * as Report from "./Report.js"
import type { Fault } from "./Report.js"
import type * as Scenario from "./Scenario.js"
import * as Sender from "./Sender.js"
import * as Target from "./Target.js"
import { sleep, startClock } from "./Time.js"
import * as Traffic from "./Traffic.js"
import * as World from "./World.js"

export interface Progress {
  /** Scenario time, ms. */
  readonly at: number
  readonly phase: "sending" | "draining"
  readonly total: number
  readonly sent: number
  readonly accepted: number
  readonly delivered: number
  readonly deferred: number
  readonly bounced: number
  readonly queued: number
  /** Accepted messages per second over the last second or so. */
  readonly rate: number
}

export interface RunOptions {
  readonly scenario: Scenario.Scenario
  readonly target: Target.Spec
  /** Called about four times a second. */
  readonly onProgress?: ((p: Progress) => void) | undefined
  /** Write the embedded node's JSON log lines here. */
  readonly logFile?: string | undefined
}

export const run = async (o: RunOptions): Promise<Report.Report> => {
  const s = o.scenario
  if (s.requires === "cluster" && o.target.kind !== "cluster") {
    throw new Target.TargetError(`scenario ${s.name} needs a cluster target (--target cluster:N): it kills nodes mid-run`)
  }
  const now = startClock()
  const ledger = Ledger.make()
  const world = await World.start(s, now, ledger)
  const notes: Array<string> = []
  let target: Target.Running | undefined
  let senders: Sender.Senders | undefined
  let timer: NodeJS.Timeout | undefined
  const faultTimers: Array<NodeJS.Timeout> = []
  const faultWork: Array<Promise<void>> = []
  const faults: Array<Fault> = []
  try {
    target = await Target.start(o.target, s, world, { logFile: o.logFile })
    if (o.target.kind === "direct")
      notes.push("target direct: no MTA, senders deliver straight into the simulated receivers; refusals are not retried and no DSNs exist")
    if (s.senders.loop === "open")
      notes.push("accept latency of an open loop counts from the scheduled arrival, so waiting for a free connection is included")
    const traffic = Traffic.plan(s)
    const endpoints = target.endpoints ?? (target.endpoint ? [target.endpoint] : [])
    const route = (m: Traffic.Message, k: number, attempt: number): Sender.Endpoint | undefined =>
      endpoints.length === 0
        ? attempt === 0
          ? { host: world.hosts.get(Ledger.domainOf(m.to[0]!))![0]!, port: world.port }
          : undefined
        : attempt === 0 || endpoints.length > 1
          ? endpoints[(k + attempt) % endpoints.length]
          : undefined
    if (s.faults.length > 0 && !target.faults)
      notes.push(`the scenario's ${s.faults.length} fault(s) were not carried out: the target cannot kill nodes`)
    if (endpoints.length > 1)
      notes.push(`sender connections spread over ${endpoints.length} nodes (connection k to node k mod ${endpoints.length} + 1)`)
    const cpu0 = process.cpuUsage()
    const targetCpu0 = target.cpuMs?.()
    now.reset()
    let phase: Progress["phase"] = "sending"
    const window: Array<{ at: number; accepted: number }> = []
    let ticks = 0
    const tick = (): void => {
      const at = now()
      const c = ledger.counters
      if (ticks++ % 4 === 0) ledger.sample(at)
      window.push({ at, accepted: c.accepted })
      while (window.length > 5) window.shift()
      const first = window[0]!
      const rate = at > first.at ? ((c.accepted - first.accepted) * 1000) / (at - first.at) : 0
      o.onProgress?.({
        at,
        phase,
        total: traffic.length,
        sent: c.sent,
        accepted: c.accepted,
        delivered: c.delivered,
        deferred: c.deferred,
        bounced: c.bounced + c.expired,
        queued: ledger.queued(),
        rate
      })
    }
    timer = setInterval(tick, 250)
    ledger.sample(0)
    const f = target.faults
    if (f) {
      const act = (node: number, action: Fault["action"], todo: () => Promise<void>): void => {
        const at = now()
        faultWork.push(
          todo().then(
            () => void faults.push({ at, node, action }),
            (e: unknown) => void faults.push({ at, node, action, error: String((e as Error)?.message ?? e) })
          )
        )
      }
      /** Runs `g` at scenario time `t` (a timer may fire a little early: it is armed again for the rest). */
      const atTime = (t: number, g: () => void): void => {
        const wait = t - now()
        if (wait <= 0) return g()
        faultTimers.push(setTimeout(() => atTime(t, g), Math.ceil(wait)))
      }
      for (const x of s.faults) {
        atTime(x.at, () => {
          act(x.kill_node, "killed", () => f.kill(x.kill_node))
          if (x.restart_after !== null) atTime(x.at + x.restart_after, () => act(x.kill_node, "restarted", () => f.restart(x.kill_node)))
        })
      }
    }
    senders = Sender.start({ scenario: s, traffic, route, ledger, now })
    await senders.done
    const sendMs = senders.lastAnswerAt()
    phase = "draining"
    const deadline = now() + s.drain
    while (ledger.unresolved() > 0 && now() < deadline) await sleep(50)
    if (ledger.unresolved() > 0)
      notes.push(`drain limit reached (${s.drain} ms after the last submission) with ${ledger.unresolved()} recipient(s) unresolved`)
    const elapsedMs = now()
    ledger.sample(elapsedMs)
    tick()
    await Promise.all(faultWork)
    const cpu = process.cpuUsage(cpu0)
    const targetCpuMs = targetCpu0 === undefined ? undefined : target.cpuMs!() - targetCpu0
    return Report.make({
      scenario: s.name,
      description: s.description,
      target: Target.describeSpec(o.target),
      seed: s.seed,
      ledger,
      elapsedMs,
      sendMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      targetCpuMs,
      notes,
      faults: [...faults].sort((a, b) => a.at - b.at),
      resubmitted: senders.retried()
    })
  } finally {
    if (timer) clearInterval(timer)
    for (const t of faultTimers) clearTimeout(t)
    await Promise.all(faultWork)
    await senders?.stop()
    await target?.stop()
    await world.close()
  }
}
