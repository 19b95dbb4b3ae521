// The incident report as one self-contained HTML page: the summary table (each column with its unit) and inline SVG
// charts over the report's chart range (the window, or its traffic with --zoom): queue depth (open recipients) in all
// and per destination, attempts and recipient outcomes per bucket, reply codes, latency percentiles.
// No script, no stylesheet or font from elsewhere, no network: it opens offline. Every text from the log is escaped.
import { barList, esc, lineChart, stackedBars, timeAxis, type LineSeries, type XAxis } from "../Chart.js"
import { COLUMNS, UNITS_NOTE, type Bucket, type DestinationReport, type Report } from "./Report.js"
import { formatDuration, iso } from "./Time.js"

const OUTCOME_COLORS = { delivered: "#2ca02c", deferred: "#ff7f0e", bounced: "#d62728", expired: "#9467bd" } as const

const codeColor = (k: string) => (k.startsWith("2") ? "#2ca02c" : k.startsWith("4") ? "#ff7f0e" : "#d62728")

/** Open recipients at each bucket's end, and the most open at once in each bucket drawn as steps. */
const depthSeries = (name: string, series: ReadonlyArray<Bucket>, bucketMs: number, withPeak: boolean): Array<LineSeries> => {
  const open: LineSeries = { name, points: series.map((b) => [b.at + bucketMs, b.open] as const) }
  if (!withPeak) return [open]
  const peak: LineSeries = {
    name: `most open within ${formatDuration(bucketMs)}`,
    dashed: true,
    points: series.flatMap((b) => [[b.at, b.peak] as const, [b.at + bucketMs, b.peak] as const])
  }
  return [open, peak]
}

const summaryTable = (rows: ReadonlyArray<DestinationReport>): string => {
  const head = `<tr><th>destination</th>${COLUMNS.map(([h]) => `<th>${esc(h.toLowerCase())}</th>`).join("")}</tr>`
  const units = `<tr class="unit"><th></th>${COLUMNS.map(([, u]) => `<th>${esc(u)}</th>`).join("")}</tr>`
  const body = rows
    .map(
      (d) =>
        `<tr${d.destination === "(all)" ? ' class="all"' : ""}><td>${esc(d.destination)}</td>${COLUMNS.map(([, , cell]) => `<td class="n">${esc(cell(d))}</td>`).join("")}</tr>`
    )
    .join("")
  return `<table><thead>${head}${units}</thead><tbody>${body}</tbody></table><p class="note">${esc(UNITS_NOTE)}</p>`
}

const activity = (title: string, x: XAxis, r: Report, d: DestinationReport) => {
  const buckets = { starts: d.series.map((b) => b.at), width: r.chart.bucketMs }
  const per = formatDuration(r.chart.bucketMs)
  return [
    stackedBars(`${title}: attempts started per ${per}`, x, buckets, [{ name: "attempts", values: d.series.map((b) => b.attempts) }], {
      yTitle: "attempts"
    }),
    stackedBars(
      `${title}: recipient outcomes per ${per}`,
      x,
      buckets,
      (["delivered", "deferred", "bounced", "expired"] as const).map((k) => ({
        name: k,
        color: OUTCOME_COLORS[k],
        values: d.series.map((b) => b[k])
      })),
      { yTitle: "recipients" }
    )
  ]
}

const section = (r: Report, x: XAxis, d: DestinationReport): string =>
  [
    `<section><h2>${esc(d.destination)}</h2>`,
    lineChart(`Queue depth: ${d.destination}`, x, depthSeries("open recipients", d.series, r.chart.bucketMs, true), {
      yTitle: "recipients"
    }),
    ...activity(d.destination, x, r, d),
    barList(
      "Reply codes (recipients given the reply by an attempt)",
      Object.entries(d.replies).map(([k, n]) => ({ label: k, value: n, color: codeColor(k) }))
    ),
    barList(
      `Delivery latency, received → delivered (${d.latency.count} recipients)`,
      [
        ["p50", d.latency.p50],
        ["p90", d.latency.p90],
        ["p99", d.latency.p99],
        ["max", d.latency.max]
      ].map(([l, v]) => ({ label: String(l), value: Number(v) })),
      { unit: formatDuration }
    ),
    "</section>"
  ].join("\n")

export const render = (r: Report, opts: { maxSections?: number } = {}): string => {
  const x = timeAxis(r.chart.from, r.chart.to)
  const top = [...r.destinations].sort((a, b) => b.peakDepth - a.peakDepth || b.recipients - a.recipients).slice(0, 7)
  const title = `Missive incident report ${iso(r.from)} .. ${iso(r.to)}${r.domain ? ` (${r.domain})` : ""}`
  const range = r.chart.zoomed
    ? `Charts zoomed to the traffic: ${iso(r.chart.from)} .. ${iso(r.chart.to)}; `
    : "Charts cover the whole window; "
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:12px}th,td{border:1px solid #ccc;padding:2px 6px}td.n{text-align:right}tr.unit th{font-weight:normal;font-size:11px;color:#666;max-width:9em}tr.all td{font-weight:bold}p.note{color:#555;font-size:12px}section{margin-top:2em}svg{display:block;margin:0.5em 0}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Window ${esc(formatDuration(r.to - r.from))}. ${esc(range)}one bar or point per ${esc(formatDuration(r.chart.bucketMs))}.</p>
${summaryTable([...r.destinations, r.total])}
${lineChart("Queue depth, all destinations", x, depthSeries("open recipients", r.total.series, r.chart.bucketMs, true), { yTitle: "recipients" })}
${lineChart(
  "Queue depth by destination (open recipients)",
  x,
  top.flatMap((d) => depthSeries(d.destination, d.series, r.chart.bucketMs, false)),
  { yTitle: "recipients" }
)}
${activity("All destinations", x, r, r.total).join("\n")}
${r.destinations
  .slice(0, opts.maxSections ?? 50)
  .map((d) => section(r, x, d))
  .join("\n")}
</body></html>
`
}
