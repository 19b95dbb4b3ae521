// Properties of the message decider over random lifecycles: a driver reads the state and picks a valid next command.
// Random messages (recipients, senders, policies), random replies and times; every run ends with a completed message.
import * as E from "fp-ts/lib/Either.js"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type Command,
  type Ctx,
  type DecideError,
  type Event,
  type EventOf,
  type Recipient,
  type State,
  decide,
  dueRecipients,
  fold,
  isTerminal,
  nextDue
} from "../src/Message.js"
import type { RetryPolicy } from "../src/Policy.js"
import { Replies, type Reply } from "../src/Reply.js"
import type { Destination, RouteDecision } from "../src/Route.js"

// ---- scenarios -----------------------------------------------------------------------------------

interface Step {
  /** 0..99: below OPERATOR an operator command, else the lifecycle's next move. */
  readonly op: number
  /** Free bits the driver uses for its choices (which group, which subset, unroutable or not). */
  readonly pick: number
  readonly replies: ReadonlyArray<number>
  readonly jitter: number
  readonly dt: number
}

interface Scenario {
  readonly sender: string
  readonly dsnOf: string | undefined
  readonly recipients: ReadonlyArray<string>
  readonly receivedAt: number
  readonly retry: RetryPolicy
  readonly steps: ReadonlyArray<Step>
}

const OPERATOR = 6

const REPLIES: ReadonlyArray<Reply> = [
  { code: 250, enhanced: "2.0.0", text: "OK" },
  { code: 250, enhanced: "2.6.0", text: "Queued" },
  { code: 451, enhanced: "4.7.1", text: "Greylisted" },
  { code: 452, enhanced: "4.2.2", text: "Mailbox full" },
  { code: 421, text: "Service not available" },
  { code: 550, enhanced: "5.1.1", text: "User unknown" },
  { code: 554, enhanced: "5.7.1", text: "Rejected" }
]

const MIN = 60_000

const retryArb: fc.Arbitrary<RetryPolicy> = fc
  .record({
    initialMs: fc.integer({ min: 1, max: 10 * MIN }),
    extra: fc.integer({ min: 0, max: 60 * MIN }),
    multiplier: fc.constantFrom(1, 1.5, 2, 3),
    jitter: fc.constantFrom(0, 0.1, 0.5),
    lifetimeMs: fc.integer({ min: 1, max: 6 * 60 * MIN })
  })
  .map(({ extra, ...p }) => ({ ...p, maxMs: p.initialMs + extra }))

const stepArb: fc.Arbitrary<Step> = fc.record({
  op: fc.integer({ min: 0, max: 99 }),
  pick: fc.nat(),
  replies: fc.array(fc.integer({ min: 0, max: REPLIES.length - 1 }), { minLength: 1, maxLength: 6 }),
  jitter: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  dt: fc.integer({ min: 0, max: 30 * MIN })
})

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  sender: fc.constantFrom("alice@origin.example", "bob@origin.example", ""),
  dsnOf: fc.option(fc.constant("01JORIGINAL"), { nil: undefined, freq: 4 }),
  recipients: fc.integer({ min: 1, max: 6 }).map((n) => Array.from({ length: n }, (_, i) => `r${i}@d${i % 3}.example`)),
  receivedAt: fc.integer({ min: 0, max: 2_000_000_000_000 }),
  retry: retryArb,
  steps: fc.array(stepArb, { minLength: 0, maxLength: 60 })
})

// ---- the driver ----------------------------------------------------------------------------------

interface Run {
  readonly scenario: Scenario
  readonly events: ReadonlyArray<Event>
  readonly state: State
  /** Every command decided, its result, and the state it was decided on. */
  readonly trace: ReadonlyArray<{
    readonly command: Command
    readonly before: State
    readonly result: E.Either<DecideError, ReadonlyArray<Event>>
  }>
  readonly versionsMatched: boolean
}

const destinationFor = (rcpt: string, unroutable: boolean): Destination => {
  const domain = rcpt.split("@")[1] ?? ""
  return unroutable
    ? { kind: "unroutable", key: domain, reply: Replies.nullMx }
    : { kind: "smtp", key: domain, hops: [{ host: `mx.${domain}`, port: 25, preference: 10 }], via: "mx" }
}

const live = (s: State) => {
  if (s.status === "empty") throw new Error("driver: message not received")
  return s
}

const bit = (pick: number, i: number): boolean => ((pick >>> (i % 30)) & 1) === 1

/** Runs a scenario: receive, then its random steps, then a drain that always ends in a completed message. */
const drive = (sc: Scenario): Run => {
  const events: Array<Event> = []
  const trace: Array<Run["trace"][number]> = []
  let state: State = fold([])
  let now = sc.receivedAt
  let versionsMatched = true
  const expiresAt = sc.receivedAt + sc.retry.lifetimeMs
  const ctx = (): Ctx => ({ at: now, node: "node-p", policy: "p0" })
  let dsnSeq = 0
  const dsnId = () => `dsn-${++dsnSeq}`

  const run = (command: Command) => {
    const before = state
    const result = decide(command, state)
    trace.push({ command, before, result })
    if (E.isRight(result)) {
      events.push(...result.right)
      state = fold(result.right, state)
      if (state.version !== events.length) versionsMatched = false
    }
    return result
  }

  /** Attempts started whose recipients are still attempting, newest first. */
  const inFlight = (s: ReturnType<typeof live>): Array<{ attempt: number; rcpts: Array<string> }> => {
    const attempting = new Set(s.recipients.filter((r) => r.status === "attempting").map((r) => r.address))
    const claimed = new Set<string>()
    const out: Array<{ attempt: number; rcpts: Array<string> }> = []
    for (const e of [...events].reverse()) {
      if (e.type !== "AttemptStarted") continue
      const rcpts = e.rcpts.filter((r) => attempting.has(r) && !claimed.has(r))
      rcpts.forEach((r) => claimed.add(r))
      if (rcpts.length > 0) out.push({ attempt: e.attempt, rcpts })
    }
    return out
  }

  const report = (attempt: { attempt: number; rcpts: ReadonlyArray<string> }, step: Step, subset: boolean) => {
    const chosen = subset ? attempt.rcpts.filter((_, i) => i === 0 || bit(step.pick, i + 7)) : attempt.rcpts
    return run({
      type: "ReportAttempt",
      ctx: ctx(),
      attempt: attempt.attempt,
      host: `mx.host${attempt.attempt}`,
      results: chosen.map((rcpt, i) => ({ rcpt, reply: REPLIES[step.replies[i % step.replies.length] ?? 0] ?? REPLIES[0]! })),
      retry: sc.retry,
      jitter: step.jitter,
      dsnId: dsnId()
    })
  }

  const start = (routed: ReadonlyArray<Recipient>, step: Step) => {
    const keys = [...new Set(routed.map((r) => r.destination?.key ?? ""))]
    const key = keys[step.pick % keys.length] ?? ""
    return run({
      type: "StartAttempt",
      ctx: ctx(),
      rcpts: routed.filter((r) => (r.destination?.key ?? "") === key).map((r) => r.address),
      destination: key
    })
  }

  const route = (due: ReadonlyArray<Recipient>, step: Step, allowUnroutable: boolean) => {
    const routes: Array<RouteDecision> = due.map((r, i) => ({
      rcpt: r.address,
      destination: destinationFor(r.address, allowUnroutable && bit(step.pick, i) && bit(step.pick, i + 11) && bit(step.pick, i + 19))
    }))
    return run({ type: "Route", ctx: ctx(), routes, dsnId: dsnId() })
  }

  run({
    type: "Receive",
    ctx: ctx(),
    id: "01JMSG",
    sender: sc.sender,
    recipients: sc.recipients,
    size: 100,
    digest: "sha256:0",
    client: { ip: "192.0.2.1", helo: "c.example", tls: false },
    ...(sc.dsnOf !== undefined ? { dsnOf: sc.dsnOf } : {})
  })

  for (const step of sc.steps) {
    if (state.status !== "active") break
    const s = state
    if (step.op < OPERATOR) {
      now += step.dt % 1000
      const by = "ops"
      const choice = step.pick % 11
      if (choice < 3) run({ type: "Hold", ctx: ctx(), by, reason: "check" })
      else if (choice < 6) run({ type: "Release", ctx: ctx(), by })
      else if (choice < 8) run({ type: "RetryNow", ctx: ctx(), by })
      else if (choice === 8) run({ type: "Bounce", ctx: ctx(), by, dsnId: dsnId() })
      else if (choice === 9) run({ type: "Expire", ctx: ctx(), retry: sc.retry, dsnId: dsnId() })
      else if (step.op < 2) run({ type: "Delete", ctx: ctx(), by })
      continue
    }
    if (s.held) {
      run({ type: "Release", ctx: ctx(), by: "ops" })
      continue
    }
    const flights = inFlight(s)
    const routed = s.recipients.filter((r) => r.status === "routed")
    // A crash now and then: routing picks up recipients left attempting too.
    const crash = step.op < OPERATOR + 4
    const due = dueRecipients(s, now).filter((r) => crash || r.status !== "attempting")
    const moves = [flights.length > 0 ? "report" : null, routed.length > 0 ? "start" : null, due.length > 0 ? "route" : null].filter(
      (m): m is string => m !== null
    )
    if (moves.length === 0) {
      // Only deferred recipients are left: let time pass their next attempt.
      now = Math.max(now, nextDue(s) ?? now) + (step.dt % 5000)
      continue
    }
    const move = moves[step.op % moves.length]
    if (move === "report") {
      now += step.dt
      report(flights[step.pick % flights.length]!, step, true)
    } else if (move === "start") start(routed, step)
    else route(due, step, true)
  }

  // Drain: ordinary progress with replies from the pool, then expiry; always reaches "completed".
  for (let i = 0; state.status === "active" && i < 400; i++) {
    const s = state
    const step: Step = { op: 50, pick: i, replies: [i % REPLIES.length], jitter: 0.5, dt: MIN }
    if (i >= 40 || now >= expiresAt) {
      now = Math.max(now, expiresAt)
      run({ type: "Expire", ctx: ctx(), retry: sc.retry, dsnId: dsnId() })
    } else if (s.held) run({ type: "Release", ctx: ctx(), by: "ops" })
    else if (inFlight(s).length > 0) {
      now += MIN
      report(inFlight(s)[0]!, step, false)
    } else if (s.recipients.some((r) => r.status === "routed"))
      start(
        s.recipients.filter((r) => r.status === "routed"),
        step
      )
    else if (dueRecipients(s, now).length > 0) route(dueRecipients(s, now), step, false)
    else now = Math.max(now + 1, nextDue(s) ?? now)
  }
  return { scenario: sc, events, state, trace, versionsMatched }
}

const runArb = scenarioArb.map(drive)

/** Every command a finished message must refuse. */
const allCommands = (at: number, rcpt: string): ReadonlyArray<Command> => {
  const ctx: Ctx = { at, node: "n", policy: "p" }
  const retry: RetryPolicy = { initialMs: 1, maxMs: 1, multiplier: 1, jitter: 0, lifetimeMs: 0 }
  return [
    { type: "Route", ctx, routes: [{ rcpt, destination: destinationFor(rcpt, false) }], dsnId: "d" },
    { type: "StartAttempt", ctx, rcpts: [rcpt], destination: "x" },
    { type: "ReportAttempt", ctx, attempt: 1, host: "h", results: [{ rcpt, reply: REPLIES[0]! }], retry, jitter: 0, dsnId: "d" },
    { type: "Expire", ctx, retry, dsnId: "d" },
    { type: "Hold", ctx, by: "o", reason: "r" },
    { type: "Release", ctx, by: "o" },
    { type: "RetryNow", ctx, by: "o" },
    { type: "Delete", ctx, by: "o" },
    { type: "Bounce", ctx, by: "o", dsnId: "d" }
  ]
}

const TERMINAL_EVENTS = new Set<Event["type"]>(["RecipientDelivered", "RecipientBounced", "RecipientExpired"])
type TerminalEvent = EventOf<"RecipientDelivered" | "RecipientBounced" | "RecipientExpired">
const terminalEvents = (events: ReadonlyArray<Event>): ReadonlyArray<TerminalEvent> =>
  events.filter((e): e is TerminalEvent => TERMINAL_EVENTS.has(e.type))
const completion = (run: Run) => run.events.find((e): e is EventOf<"MessageCompleted"> => e.type === "MessageCompleted")

const RUNS = { numRuns: 300 }

// ---- properties ----------------------------------------------------------------------------------

describe("decider properties over random lifecycles", () => {
  it("the driver reaches every outcome: delivered, bounced, expired, deleted, DSN and no DSN", () => {
    // Guards the properties below against a driver that never gets anywhere interesting.
    const seen = new Map<string, number>()
    const note = (k: string) => seen.set(k, (seen.get(k) ?? 0) + 1)
    for (const r of fc.sample(runArb, { numRuns: 400, seed: 42 })) {
      for (const e of r.events) note(e.type)
      const done = completion(r)
      if (done?.deleted) note("deleted")
      if (r.scenario.sender === "" && r.events.some((e) => e.type === "RecipientBounced")) note("null-sender bounce")
      if (r.trace.some((t) => E.isLeft(t.result))) note("refused command")
      if (r.events.some((e) => e.type === "RecipientsRouted" && e.routes.some((x) => x.destination.kind === "unroutable")))
        note("unroutable")
    }
    for (const k of [
      "RecipientDelivered",
      "RecipientBounced",
      "RecipientExpired",
      "BounceQueued",
      "AttemptDeferred",
      "AttemptFailed",
      "MessageHeld",
      "MessageReleased",
      "RetryRequested",
      "deleted",
      "null-sender bounce",
      "refused command",
      "unroutable"
    ])
      expect(seen.get(k) ?? 0, k).toBeGreaterThan(0)
  })

  it("every run ends with the message completed, exactly once, by the last event", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        expect(r.state.status).toBe("completed")
        expect(r.events.filter((e) => e.type === "MessageCompleted")).toHaveLength(1)
        expect(r.events.at(-1)?.type).toBe("MessageCompleted")
      }),
      RUNS
    )
  })

  it("folding is deterministic: the same events give deep-equal states, equal to the state built step by step", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        const copy = structuredClone(r.events) as ReadonlyArray<Event>
        expect(fold(copy)).toEqual(fold(r.events))
        expect(fold(r.events)).toEqual(r.state)
        const cut = Math.floor(r.events.length / 2)
        expect(fold(r.events.slice(cut), fold(r.events.slice(0, cut)))).toEqual(r.state)
      }),
      RUNS
    )
  })

  it("version equals the number of events folded, after every command", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        expect(r.versionsMatched).toBe(true)
        expect(r.state.version).toBe(r.events.length)
      }),
      RUNS
    )
  })

  it("once completed (not deleted) every recipient is terminal, by exactly one terminal event, and the counts agree", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        const done = completion(r)!
        if (done.deleted) return
        const s = live(r.state)
        expect(s.recipients.every((x) => isTerminal(x.status))).toBe(true)
        const terminals = terminalEvents(r.events)
        for (const x of s.recipients) expect(terminals.filter((e) => e.rcpt === x.address)).toHaveLength(1)
        expect(terminals).toHaveLength(s.recipients.length)
        expect(done.delivered + done.bounced + done.expired).toBe(s.recipients.length)
        expect(done.delivered).toBe(terminals.filter((e) => e.type === "RecipientDelivered").length)
        expect(done.bounced).toBe(terminals.filter((e) => e.type === "RecipientBounced").length)
        expect(done.expired).toBe(terminals.filter((e) => e.type === "RecipientExpired").length)
      }),
      RUNS
    )
  })

  it("no recipient is both delivered and bounced or expired: at most one terminal event per recipient", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        const count = new Map<string, number>()
        for (const e of terminalEvents(r.events)) count.set(e.rcpt, (count.get(e.rcpt) ?? 0) + 1)
        for (const [rcpt, n] of count) expect(n, rcpt).toBe(1)
        for (const e of terminalEvents(r.events)) expect(r.scenario.recipients).toContain(e.rcpt)
      }),
      RUNS
    )
  })

  it("no DSN for a null sender nor for a DSN; otherwise exactly one DSN naming exactly the failed recipients", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        const dsns = r.events.filter((e): e is EventOf<"BounceQueued"> => e.type === "BounceQueued")
        const failed = terminalEvents(r.events)
          .filter((e) => e.type !== "RecipientDelivered")
          .map((e) => e.rcpt)
        const owesDsn = r.scenario.sender !== "" && r.scenario.dsnOf === undefined && !completion(r)!.deleted && failed.length > 0
        if (!owesDsn) expect(dsns).toHaveLength(0)
        else {
          expect(dsns).toHaveLength(1)
          expect([...dsns[0]!.rcpts].sort()).toEqual([...failed].sort())
        }
      }),
      RUNS
    )
  })

  it("decide never returns events for a completed message", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        for (const t of r.trace) if (t.before.status === "completed") expect(E.isLeft(t.result)).toBe(true)
        const rcpt = r.scenario.recipients[0]!
        for (const c of allCommands(r.scenario.receivedAt + 10 ** 10, rcpt))
          expect(decide(c, r.state)).toEqual(E.left({ _tag: "MessageFinished", id: "01JMSG" }))
      }),
      RUNS
    )
  })

  it("every deferral is scheduled after its own time and no later than receivedAt + lifetime", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        const expiresAt = r.scenario.receivedAt + r.scenario.retry.lifetimeMs
        for (const e of r.events) {
          if (e.type !== "AttemptDeferred") continue
          if (e.nextAttemptAt === null) expect(e.at).toBeGreaterThanOrEqual(expiresAt)
          else {
            expect(e.nextAttemptAt).toBeGreaterThan(e.at)
            expect(e.nextAttemptAt).toBeLessThanOrEqual(expiresAt)
          }
        }
      }),
      RUNS
    )
  })

  it("a refused command never changes the state, and Attempt* events name each reported recipient once", () => {
    fc.assert(
      fc.property(runArb, (r) => {
        for (const t of r.trace) {
          if (E.isLeft(t.result) || t.command.type !== "ReportAttempt") continue
          const named = t.result.right.flatMap((e) =>
            e.type === "AttemptSucceeded" || e.type === "AttemptDeferred" || e.type === "AttemptFailed" ? e.rcpts : []
          )
          expect([...named].sort()).toEqual(t.command.results.map((x) => x.rcpt).sort())
        }
        // The driver's state only moved on Right results: replaying the Right results alone rebuilds it.
        expect(fold(r.trace.flatMap((t) => (E.isRight(t.result) ? t.result.right : [])))).toEqual(r.state)
      }),
      RUNS
    )
  })
})
