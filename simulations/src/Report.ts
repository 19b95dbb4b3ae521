// The outcome of a run as data (counts, rates, latency percentiles, per-destination outcomes, reply codes, time series)
// and as a text summary table. Reads the ledger; computes nothing that changes a verdict except `lost`.
import type * as Ledger from "./Ledger.js"

export interface Percentiles {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/** The lifecycle counts a scenario test asserts (deterministic for a given seed unless the scenario says otherwise). */
export interface Counts {
  readonly sent: number
  readonly accepted: number
  readonly refused: number
  readonly recipients: number
  readonly delivered: number
  readonly bounced: number
  readonly expired: number
  readonly lost: number
}

/** A node fault carried out during the run (cluster targets). */
export interface Fault {
  /** Scenario time, ms. */
  readonly at: number
  readonly node: number
  readonly action: "killed" | "restarted"
  /** Why it could not be done, when it failed. */
  readonly error?: string | undefined
}

export interface Report {
  readonly scenario: string
  readonly description: string
  readonly target: string
  readonly seed: number
  readonly counts: Counts
  /** Timing-dependent figures: not asserted by tests. */
  readonly deferred: number
  readonly duplicates: number
  readonly dsns: number
  /** Wall time from the first send to the last outcome (or the end of the drain), ms. */
  readonly elapsedMs: number
  /** Time the senders needed to submit everything, ms. */
  readonly sendMs: number
  /** Accepted messages per second over the sending period. */
  readonly acceptRate: number
  /** Delivered recipients per second over the whole run. */
  readonly deliverRate: number
  readonly acceptLatency: Percentiles
  readonly endToEnd: Percentiles
  readonly destinations: ReadonlyArray<{ readonly domain: string } & Ledger.DestinationStats>
  readonly sourceReplies: Readonly<Record<string, number>>
  readonly sinkReplies: Readonly<Record<string, number>>
  readonly samples: ReadonlyArray<Ledger.Sample>
  /** CPU time used by this process (harness and, for `embedded`, the node), ms. */
  readonly cpuMs?: number | undefined
  /** CPU time of an out-of-process target (its processes), ms. */
  readonly targetCpuMs?: number | undefined
  readonly faults: ReadonlyArray<Fault>
  /** Submissions tried again on another node after a connection failure (a killed node). */
  readonly resubmitted: number
  /** Some lost recipients, for the loud failure. */
  readonly lostExamples: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
}

/** The nearest-rank quantile `q` (0–1) of ascending `sorted` values; NaN when there are none. */
export const quantile = (sorted: ArrayLike<number>, q: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

/** p50, p90, p99 and max of unsorted values (nearest rank); all 0 when there are none. */
export const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  if (values.length === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 }
  const v = Float64Array.from(values).sort()
  return { count: v.length, p50: quantile(v, 0.5), p90: quantile(v, 0.9), p99: quantile(v, 0.99), max: v[v.length - 1]! }
}

export const make = (o: {
  scenario: string
  description: string
  target: string
  seed: number
  ledger: Ledger.Ledger
  elapsedMs: number
  sendMs: number
  cpuMs?: number | undefined
  targetCpuMs?: number | undefined
  notes?: ReadonlyArray<string>
  faults?: ReadonlyArray<Fault>
  resubmitted?: number
}): Report => {
  const c = o.ledger.counters
  const lost = o.ledger.lost()
  return {
    scenario: o.scenario,
    description: o.description,
    target: o.target,
    seed: o.seed,
    counts: {
      sent: c.sent,
      accepted: c.accepted,
      refused: c.refused,
      recipients: c.recipients,
      delivered: c.delivered,
      bounced: c.bounced,
      expired: c.expired,
      lost: lost.length
    },
    deferred: c.deferred,
    duplicates: c.duplicates,
    dsns: c.dsns,
    elapsedMs: o.elapsedMs,
    sendMs: o.sendMs,
    acceptRate: o.sendMs > 0 ? (c.accepted * 1000) / o.sendMs : 0,
    deliverRate: o.elapsedMs > 0 ? (c.delivered * 1000) / o.elapsedMs : 0,
    acceptLatency: percentiles(o.ledger.acceptLatency),
    endToEnd: percentiles(o.ledger.endToEnd),
    destinations: [...o.ledger.destinations.entries()]
      .map(([domain, d]) => ({ domain, ...d }))
      .sort((a, b) => a.domain.localeCompare(b.domain)),
    sourceReplies: o.ledger.sourceReplies,
    sinkReplies: o.ledger.sinkReplies,
    samples: o.ledger.samples,
    cpuMs: o.cpuMs,
    targetCpuMs: o.targetCpuMs,
    lostExamples: lost.slice(0, 10).map((r) => r.rcpt),
    notes: o.notes ?? [],
    faults: o.faults ?? [],
    resubmitted: o.resubmitted ?? 0
  }
}

const ms = (x: number): string => (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`)

const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)))
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")).join("\n")
}

const codes = (r: Readonly<Record<string, number>>): string =>
  Object.entries(r)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}×${v}`)
    .join(" ") || "-"

/** The summary printed at the end of `missive sim run`. */
export const formatText = (r: Report): string => {
  const c = r.counts
  const lines = [
    `scenario ${r.scenario} (seed ${r.seed}) against ${r.target}: ${ms(r.elapsedMs)}`,
    "",
    table(
      [
        ["sent", "accepted", "refused", "recipients", "delivered", "bounced", "expired", "deferred", "duplicates", "lost"],
        [c.sent, c.accepted, c.refused, c.recipients, c.delivered, c.bounced, c.expired, r.deferred, r.duplicates, c.lost].map(String)
      ].map((row, i) => (i === 0 ? row : row))
    ).replace(/^/gm, "  "),
    "",
    `  throughput   ${r.acceptRate.toFixed(1)} accepted msgs/s while sending (${ms(r.sendMs)}), ${r.deliverRate.toFixed(1)} delivered rcpts/s overall` +
      (r.cpuMs !== undefined && c.accepted > 0 ? `, ${(r.cpuMs / c.accepted).toFixed(2)} ms CPU per accepted message (this process)` : ""),
    `  accept       p50 ${ms(r.acceptLatency.p50)}  p90 ${ms(r.acceptLatency.p90)}  p99 ${ms(r.acceptLatency.p99)}  max ${ms(r.acceptLatency.max)}`,
    `  end-to-end   p50 ${ms(r.endToEnd.p50)}  p90 ${ms(r.endToEnd.p90)}  p99 ${ms(r.endToEnd.p99)}  max ${ms(r.endToEnd.max)}`,
    `  replies to senders    ${codes(r.sourceReplies)}`,
    `  replies by receivers  ${codes(r.sinkReplies)}`,
    "",
    table([
      ["destination", "delivered", "bounced", "expired", "deferred", "5xx"],
      ...r.destinations.map((d) => [d.domain, d.delivered, d.bounced, d.expired, d.deferred, d.rejected].map(String))
    ]).replace(/^/gm, "  "),
    ...(r.faults.length > 0
      ? [
          "",
          ...r.faults.map(
            (f) =>
              `  fault  ${ms(f.at).padStart(8)}  node-${f.node} ${f.action === "killed" ? "killed (SIGKILL)" : "restarted"}${f.error ? ` FAILED: ${f.error}` : ""}`
          ),
          `  resubmitted to another node after a connection failure: ${r.resubmitted}`
        ]
      : []),
    ...r.notes.map((n) => `  note: ${n}`),
    "",
    c.lost === 0
      ? `loss check: OK (every accepted recipient was delivered or its sender got a DSN)`
      : `LOSS CHECK FAILED: ${c.lost} accepted recipient(s) neither delivered nor bounced, e.g. ${r.lostExamples.join(", ")}`
  ]
  return lines.join("\n")
}
