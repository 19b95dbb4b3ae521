// The incident report as one self-contained HTML page: tables and inline SVG charts (queue depth over time, reply
// codes, latency percentiles). No script, no stylesheet or font from elsewhere, no network: it opens offline.
import type { DestinationReport, Report } from "./Report.js"
import { formatDuration, iso } from "./Time.js"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

const niceMax = (v: number) => {
  if (v <= 0) return 1
  const p = Math.pow(10, Math.floor(Math.log10(v)))
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v) ?? v
}

export const lineChart = (
  title: string,
  series: ReadonlyArray<Series>,
  o: { width?: number; height?: number; xLabel?: (x: number) => string } = {}
): string => {
  const W = o.width ?? 760,
    H = o.height ?? 260,
    L = 50,
    R = 150,
    T = 24,
    B = 30
  const xs = series.flatMap((s) => s.points.map((p) => p[0]))
  const x0 = Math.min(...xs, 0 < xs.length ? xs[0]! : 0),
    x1 = Math.max(...xs, x0 + 1)
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))))
  const sx = (x: number) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R)
  const sy = (y: number) => H - B - (y / yMax) * (H - T - B)
  const parts: Array<string> = [
    `<svg role="img" aria-label="${esc(title)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<text x="${L}" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`
  ]
  for (const f of [0, 0.5, 1])
    parts.push(
      `<text x="${L - 4}" y="${sy(yMax * f) + 4}" font-size="10" text-anchor="end">${Math.round(yMax * f)}</text>`,
      `<line x1="${L}" y1="${sy(yMax * f)}" x2="${W - R}" y2="${sy(yMax * f)}" stroke="#eee"/>`
    )
  const xl = o.xLabel ?? ((x: number) => iso(x).slice(11, 19))
  for (const f of [0, 0.5, 1]) {
    const x = x0 + (x1 - x0) * f
    parts.push(`<text x="${sx(x)}" y="${H - B + 14}" font-size="10" text-anchor="middle">${esc(xl(x))}</text>`)
  }
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length]!
    if (s.points.length)
      parts.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2" points="${s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")}"/>`
      )
    parts.push(
      `<rect x="${W - R + 10}" y="${T + i * 16}" width="10" height="10" fill="${c}"/><text x="${W - R + 24}" y="${T + i * 16 + 9}" font-size="11">${esc(s.name)}</text>`
    )
  })
  parts.push("</svg>")
  return parts.join("")
}

export const barChart = (
  title: string,
  bars: ReadonlyArray<{ label: string; value: number; color?: string }>,
  o: { width?: number; unit?: (v: number) => string } = {}
): string => {
  const W = o.width ?? 560,
    row = 20,
    L = 150,
    T = 24
  const H = T + Math.max(1, bars.length) * row + 8
  const max = Math.max(1, ...bars.map((b) => b.value))
  const unit = o.unit ?? ((v: number) => String(v))
  const parts = [
    `<svg role="img" aria-label="${esc(title)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<text x="0" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`
  ]
  bars.forEach((b, i) => {
    const w = (b.value / max) * (W - L - 90)
    const c = b.color ?? PALETTE[0]!
    parts.push(
      `<text x="${L - 6}" y="${T + i * row + 13}" font-size="11" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${L}" y="${T + i * row + 3}" width="${w.toFixed(1)}" height="${row - 6}" fill="${c}"/>`,
      `<text x="${L + w + 4}" y="${T + i * row + 13}" font-size="11">${esc(unit(b.value))}</text>`
    )
  })
  parts.push("</svg>")
  return parts.join("")
}

const codeColor = (k: string) => (k.startsWith("2") ? "#2ca02c" : k.startsWith("4") ? "#ff7f0e" : "#d62728")

const summaryTable = (rows: ReadonlyArray<DestinationReport>): string => {
  const head = [
    "destination",
    "messages",
    "attempts",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "p50",
    "p90",
    "p99",
    "max",
    "peak queue"
  ]
  const body = rows.map((d) => [
    d.destination,
    d.messages,
    d.attempts,
    d.delivered,
    d.deferred,
    d.bounced,
    d.expired,
    formatDuration(d.latency.p50),
    formatDuration(d.latency.p90),
    formatDuration(d.latency.p99),
    formatDuration(d.latency.max),
    d.peakDepth
  ])
  return `<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>${body.map((r) => `<tr>${r.map((c, i) => `<td${i ? ' class="n"' : ""}>${esc(String(c))}</td>`).join("")}</tr>`).join("")}</tbody></table>`
}

const section = (d: DestinationReport): string =>
  [
    `<section><h2>${esc(d.destination)}</h2>`,
    lineChart(`Queue depth: ${d.destination}`, [
      { name: "open", points: d.depth.map((p) => [p.at, p.open] as const) },
      { name: "peak", points: d.depth.map((p) => [p.at, p.peak] as const) }
    ]),
    barChart(
      "Reply codes (recipients)",
      Object.entries(d.replies).map(([k, n]) => ({ label: k, value: n, color: codeColor(k) }))
    ),
    barChart(
      `Delivery latency (${d.latency.count} deliveries)`,
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
  const top = [...r.destinations].sort((a, b) => b.peakDepth - a.peakDepth || b.messages - a.messages).slice(0, 7)
  const title = `Missive incident report ${iso(r.from)} .. ${iso(r.to)}${r.domain ? ` (${r.domain})` : ""}`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right}section{margin-top:2em}svg{display:block;margin:0.5em 0}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Window ${esc(formatDuration(r.to - r.from))}; queue depth sampled every ${esc(formatDuration(r.bucketMs))}.</p>
${summaryTable([...r.destinations, r.total])}
${lineChart("Queue depth (open recipients)", [{ name: "(all)", points: r.total.depth.map((p) => [p.at, p.open] as const) }, ...top.map((d) => ({ name: d.destination, points: d.depth.map((p) => [p.at, p.open] as const) }))])}
${r.destinations
  .slice(0, opts.maxSections ?? 50)
  .map(section)
  .join("\n")}
</body></html>
`
}
