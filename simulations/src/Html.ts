// The HTML report of a run: one self-contained page (inline CSS and SVG, no script, no CDN) with throughput and queue
// depth over time, accept and end-to-end latency percentiles, outcomes per destination and SMTP reply codes.
// Pure: a Report in, a string out. Every text from the run is escaped.
import { numberTicks, yScale } from "./Chart.js"
import type * as Report from "./Report.js"

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const W = 640
const H = 220
const PAD = { l: 50, r: 12, t: 12, b: 28 }
const COLORS = ["#2b6cb0", "#38a169", "#d69e2e", "#e53e3e", "#805ad5", "#718096"]

/** Grid, y labels (round steps) and x ticks at round values over exactly [0, xMax]: the run, not a rounded-up span. */
const axes = (xMax: number, yTop: number, yTicks: ReadonlyArray<number>, xLabel: string): string => {
  const iw = W - PAD.l - PAD.r
  const ih = H - PAD.t - PAD.b
  const xt = numberTicks(0, xMax)
  return [
    ...yTicks.map(
      (v) =>
        `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ih * (1 - v / yTop)}" y2="${PAD.t + ih * (1 - v / yTop)}" stroke="#e2e8f0"/>` +
        `<text x="${PAD.l - 6}" y="${PAD.t + ih * (1 - v / yTop) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`
    ),
    ...xt.map(
      (t, i) =>
        `<text x="${(PAD.l + (iw * t.at) / xMax).toFixed(1)}" y="${H - 8}" text-anchor="middle">${t.label}${i === xt.length - 1 ? ` ${xLabel}` : ""}</text>`
    )
  ].join("")
}

/** A line chart of series sharing one x axis, from 0 to `xEnd` (the run's length; default: the last point). */
export const lineChart = (
  title: string,
  xLabel: string,
  series: ReadonlyArray<{ name: string; points: ReadonlyArray<readonly [number, number]> }>,
  xEnd?: number
): string => {
  const last = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[0])))
  const xMax = Math.max(xEnd ?? last, 1e-9)
  const ys = yScale(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))), false)
  const x = (v: number): number => PAD.l + ((W - PAD.l - PAD.r) * Math.min(v, xMax)) / xMax
  const y = (v: number): number => PAD.t + (H - PAD.t - PAD.b) * (1 - v / ys.top)
  const paths = series.map(
    (s, i) =>
      `<polyline data-series="${esc(s.name)}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.6" points="${s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" ")}"/>`
  )
  return figure(
    title,
    `${axes(xMax, ys.top, ys.ticks, xLabel)}${paths.join("")}`,
    series.map((s) => s.name),
    `data-x0="0" data-x1="${xMax}" data-plot="${PAD.l},${PAD.t},${W - PAD.r},${H - PAD.b}" data-ytop="${ys.top}"`
  )
}

/** Groups of bars (one group per category, one bar per series). */
export const barChart = (
  title: string,
  categories: ReadonlyArray<string>,
  series: ReadonlyArray<{ name: string; values: ReadonlyArray<number> }>,
  stacked = false
): string => {
  const totals = categories.map((_, c) =>
    stacked ? series.reduce((a, s) => a + (s.values[c] ?? 0), 0) : Math.max(0, ...series.map((s) => s.values[c] ?? 0))
  )
  const ys = yScale(Math.max(0, ...totals), false)
  const yMax = ys.top
  const iw = W - PAD.l - PAD.r
  const ih = H - PAD.t - PAD.b
  const gw = iw / Math.max(1, categories.length)
  const bw = stacked ? gw * 0.6 : (gw * 0.8) / Math.max(1, series.length)
  const bars: Array<string> = []
  categories.forEach((cat, c) => {
    let base = 0
    series.forEach((s, i) => {
      const v = s.values[c] ?? 0
      const h = (ih * v) / yMax
      const x0 = stacked ? PAD.l + gw * c + gw * 0.2 : PAD.l + gw * c + gw * 0.1 + bw * i
      const y0 = PAD.t + ih - h - (stacked ? (ih * base) / yMax : 0)
      if (v > 0)
        bars.push(
          `<rect x="${x0.toFixed(1)}" y="${y0.toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${cat} ${s.name}: ${v}`)}</title></rect>`
        )
      base += stacked ? v : 0
    })
    bars.push(`<text x="${(PAD.l + gw * c + gw / 2).toFixed(1)}" y="${H - 8}" text-anchor="middle">${esc(cat)}</text>`)
  })
  const grid = ys.ticks
    .map(
      (v) =>
        `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ih * (1 - v / yMax)}" y2="${PAD.t + ih * (1 - v / yMax)}" stroke="#e2e8f0"/>` +
        `<text x="${PAD.l - 6}" y="${PAD.t + ih * (1 - v / yMax) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`
    )
    .join("")
  return figure(
    title,
    grid + bars.join(""),
    series.map((s) => s.name)
  )
}

const figure = (title: string, body: string, legend: ReadonlyArray<string>, attrs = ""): string =>
  `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}" ${attrs}>${body}</svg>` +
  `<div class="legend">${legend.map((n, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(n)}</span>`).join("")}</div></figure>`

/** Per-second rates from cumulative samples. */
const rates = (
  samples: ReadonlyArray<Report.Report["samples"][number]>,
  pick: (s: Report.Report["samples"][number]) => number
): Array<readonly [number, number]> =>
  samples.slice(1).map((s, i) => {
    const prev = samples[i]!
    const dt = (s.at - prev.at) / 1000
    return [s.at / 1000, dt > 0 ? (pick(s) - pick(prev)) / dt : 0] as const
  })

export const render = (r: Report.Report): string => {
  // The time axes end where the run ended (its last sample at the latest), never at a rounded-up number.
  const runEnd = Math.max(r.elapsedMs, ...r.samples.map((s) => s.at)) / 1000
  const c = r.counts
  const lat = (p: Report.Percentiles): ReadonlyArray<number> => [p.p50, p.p90, p.p99, p.max]
  const replyCodes = [...new Set([...Object.keys(r.sourceReplies), ...Object.keys(r.sinkReplies)])].sort()
  const rows = (
    [
      ["sent", c.sent],
      ["accepted", c.accepted],
      ["refused", c.refused],
      ["recipients", c.recipients],
      ["delivered", c.delivered],
      ["bounced", c.bounced],
      ["expired", c.expired],
      ["deferred (receiver 4xx and cuts)", r.deferred],
      ["duplicates", r.duplicates],
      ["lost", c.lost]
    ] as const
  )
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`)
    .join("")
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Missive simulation: ${esc(r.scenario)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1340px;color:#1a202c;padding:0 1em}
h1{font-size:1.4em}.grid{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}figcaption{font-weight:600;margin-bottom:.3em}
svg{font-size:11px;fill:#4a5568;background:#fff;border:1px solid #e2e8f0}.legend span{margin-right:1em}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}table{border-collapse:collapse}
th,td{padding:2px 10px;border-bottom:1px solid #edf2f7;text-align:right}th{text-align:left;font-weight:500}
.ok{color:#276749;font-weight:600}.fail{color:#c53030;font-weight:700}
</style></head><body>
<h1>Missive simulation: ${esc(r.scenario)} <small>(seed ${r.seed}, target ${esc(r.target)})</small></h1>
<p>${esc(r.description)}</p>
<p class="${c.lost === 0 ? "ok" : "fail"}">${
    c.lost === 0
      ? "Loss check passed: every accepted recipient was delivered or its sender received a DSN."
      : `Loss check FAILED: ${c.lost} accepted recipient(s) were neither delivered nor bounced (${esc(r.lostExamples.join(", "))}).`
  }</p>
<div class="grid"><table>${rows}</table>
<table><tr><th>accepted msgs/s while sending</th><td>${r.acceptRate.toFixed(1)}</td></tr><tr><th>delivered rcpts/s overall</th><td>${r.deliverRate.toFixed(1)}</td></tr>
<tr><th>sending time</th><td>${(r.sendMs / 1000).toFixed(1)} s</td></tr><tr><th>run time</th><td>${(r.elapsedMs / 1000).toFixed(1)} s</td></tr>
${r.cpuMs !== undefined ? `<tr><th>CPU (this process)</th><td>${(r.cpuMs / 1000).toFixed(1)} s</td></tr>` : ""}</table></div>
<div class="grid">
${lineChart(
  "Throughput over time (per second)",
  "s",
  [
    { name: "accepted msgs/s", points: rates(r.samples, (s) => s.accepted) },
    { name: "delivered rcpts/s", points: rates(r.samples, (s) => s.delivered) }
  ],
  runEnd
)}
${lineChart("Queue depth over time (accepted messages not yet resolved)", "s", [{ name: "messages in flight", points: r.samples.map((s) => [s.at / 1000, s.queued] as const) }], runEnd)}
${barChart(
  "Latency percentiles (ms)",
  ["p50", "p90", "p99", "max"],
  [
    { name: "accept (submission → 250)", values: lat(r.acceptLatency) },
    { name: "end-to-end (250 → delivered)", values: lat(r.endToEnd) }
  ]
)}
${barChart(
  "Outcomes per destination (recipients; deferred = 4xx replies)",
  r.destinations.map((d) => d.domain),
  [
    { name: "delivered", values: r.destinations.map((d) => d.delivered) },
    { name: "deferred", values: r.destinations.map((d) => d.deferred) },
    { name: "expired", values: r.destinations.map((d) => d.expired) },
    { name: "bounced", values: r.destinations.map((d) => d.bounced) }
  ],
  true
)}
${barChart("SMTP reply codes", replyCodes, [
  { name: "target → senders", values: replyCodes.map((k) => r.sourceReplies[k] ?? 0) },
  { name: "receivers → target", values: replyCodes.map((k) => r.sinkReplies[k] ?? 0) }
])}
</div>
${
  r.faults.length > 0
    ? `<h2>Faults</h2><table><tr><th>scenario time</th><th>node</th><th>what</th></tr>${r.faults
        .map(
          (f) =>
            `<tr><td>${(f.at / 1000).toFixed(1)} s</td><td>node-${f.node}</td><td>${f.action === "killed" ? "killed (SIGKILL)" : "restarted"}${f.error ? ` — failed: ${esc(f.error)}` : ""}</td></tr>`
        )
        .join("")}</table>
<p>Submissions tried again on another node after a connection failure: ${r.resubmitted}.</p>`
    : ""
}
${r.notes.map((n) => `<p>Note: ${esc(n)}</p>`).join("\n")}
</body></html>
`
}
