// Inline SVG charts for the self-contained HTML reports (the simulation's and the incident replay's): line and step
// series and stacked bars over an x range the caller gives (the window or the run, never stretched to a round
// number), with round tick values on both axes. Pure: data in, SVG text out; no script, no external asset.
// Each <svg> carries its geometry as data attributes (x range, plot box, y top) so a test can map the drawing back
// to the data.

export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

export interface Tick {
  readonly at: number
  readonly label: string
}

export interface XAxis {
  readonly from: number
  readonly to: number
  readonly ticks: ReadonlyArray<Tick>
  /** Under the axis, e.g. "time (UTC)". */
  readonly title: string
}

const STEPS_125 = (v: number): number => {
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= v) ?? 10 * p
}

/** A round step and top for a y axis from 0 to `max`: about four steps; whole numbers for counts. */
export const yScale = (max: number, integer = true): { top: number; ticks: ReadonlyArray<number> } => {
  if (!(max > 0)) return { top: 1, ticks: [0, 1] }
  let step = STEPS_125(max / 4)
  if (integer) step = Math.max(1, Math.round(step) === step ? step : Math.ceil(step))
  const top = Math.ceil(max / step - 1e-9) * step
  const ticks: Array<number> = []
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)))
  return { top, ticks }
}

/** Round ticks over [from, to] for plain numbers (seconds of a run, say). */
export const numberTicks = (from: number, to: number, unit = ""): ReadonlyArray<Tick> => {
  const span = Math.max(to - from, 1e-9)
  const step = STEPS_125(span / 6)
  const out: Array<Tick> = []
  for (let v = Math.ceil(from / step) * step; v <= to + step * 1e-9; v += step)
    out.push({ at: v, label: `${Number(v.toPrecision(10))}${unit}` })
  return out
}

const SECOND = 1000,
  MINUTE = 60 * SECOND,
  HOUR = 60 * MINUTE,
  DAY = 24 * HOUR
const TIME_STEPS = [
  SECOND,
  2 * SECOND,
  5 * SECOND,
  10 * SECOND,
  15 * SECOND,
  30 * SECOND,
  MINUTE,
  2 * MINUTE,
  5 * MINUTE,
  10 * MINUTE,
  15 * MINUTE,
  30 * MINUTE,
  HOUR,
  2 * HOUR,
  3 * HOUR,
  6 * HOUR,
  12 * HOUR,
  DAY,
  2 * DAY,
  7 * DAY
]

/** The smallest round duration (1 ms, 2, 5, 10, … 1 s, 2 s, 5 s, … 1 min, … 1 h, … 1 day) at or above `ms`. */
export const roundDuration = (ms: number): number =>
  [1, 2, 5, 10, 20, 50, 100, 200, 250, 500, ...TIME_STEPS].find((s) => s >= ms) ?? Math.ceil(ms / DAY) * DAY

/** Ticks on round UTC times (every 5 minutes, every hour, …) over [from, to] (epoch ms), at most about seven. */
export const timeTicks = (from: number, to: number): ReadonlyArray<Tick> => {
  const span = Math.max(1, to - from)
  const step = TIME_STEPS.find((s) => span / s <= 7) ?? Math.ceil(span / 7 / DAY) * DAY
  const iso = (t: number) => new Date(t).toISOString()
  const label = (t: number) => {
    const s = iso(t)
    const clock = step < MINUTE ? s.slice(11, 19) : s.slice(11, 16)
    return span > DAY ? `${s.slice(5, 10)} ${clock}` : clock
  }
  const out: Array<Tick> = []
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) out.push({ at: t, label: label(t) })
  return out
}

export const timeAxis = (from: number, to: number): XAxis => {
  const d = (t: number) => new Date(t).toISOString().slice(0, 10)
  return { from, to, ticks: timeTicks(from, to), title: `time (UTC, ${d(from)}${d(from) === d(to) ? "" : ` .. ${d(to)}`})` }
}

export interface LineSeries {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
  readonly color?: string
  readonly dashed?: boolean
}

export interface BarSeries {
  readonly name: string
  /** One value per bucket. */
  readonly values: ReadonlyArray<number>
  readonly color?: string
}

const W = 760,
  H = 240,
  L = 56,
  R = 170,
  T = 26,
  B = 40

interface Frame {
  readonly sx: (x: number) => number
  readonly sy: (y: number) => number
  readonly parts: Array<string>
}

const frame = (title: string, x: XAxis, yMax: number, yTitle: string, integer: boolean): Frame => {
  const y = yScale(yMax, integer)
  const span = x.to - x.from || 1
  const sx = (v: number) => L + ((v - x.from) / span) * (W - L - R)
  const sy = (v: number) => H - B - (v / y.top) * (H - T - B)
  const parts: Array<string> = [
    `<svg role="img" aria-label="${esc(title)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" ` +
      `data-x0="${x.from}" data-x1="${x.to}" data-plot="${L},${T},${W - R},${H - B}" data-ytop="${y.top}">`,
    `<text x="${L}" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="${(T + H - B) / 2}" font-size="10" text-anchor="middle" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(yTitle)}</text>`
  ]
  for (const v of y.ticks)
    parts.push(
      `<line x1="${L}" y1="${sy(v).toFixed(1)}" x2="${W - R}" y2="${sy(v).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${L - 5}" y="${(sy(v) + 3.5).toFixed(1)}" font-size="10" text-anchor="end">${v.toLocaleString("en-US")}</text>`
    )
  for (const t of x.ticks)
    parts.push(
      `<line x1="${sx(t.at).toFixed(1)}" y1="${H - B}" x2="${sx(t.at).toFixed(1)}" y2="${H - B + 4}" stroke="#999"/>`,
      `<text x="${sx(t.at).toFixed(1)}" y="${H - B + 15}" font-size="10" text-anchor="middle">${esc(t.label)}</text>`
    )
  parts.push(
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 6}" font-size="10" text-anchor="middle" fill="#555">${esc(x.title)}</text>`
  )
  return { sx, sy, parts }
}

const legend = (f: Frame, names: ReadonlyArray<{ name: string; color: string; dashed?: boolean | undefined }>) =>
  names.forEach((s, i) =>
    f.parts.push(
      `<rect x="${W - R + 12}" y="${T + i * 16}" width="12" height="${s.dashed ? 3 : 10}" fill="${s.color}"/>` +
        `<text x="${W - R + 28}" y="${T + i * 16 + 9}" font-size="11">${esc(s.name)}</text>`
    )
  )

/** Lines over the x axis's range; a point past either end (a bucket's end past the window's) is drawn at that end. */
export const lineChart = (title: string, x: XAxis, series: ReadonlyArray<LineSeries>, o: { yTitle?: string; integer?: boolean } = {}) => {
  const clamp = (v: number) => Math.min(x.to, Math.max(x.from, v))
  const inRange = series.map((s) => ({ ...s, points: s.points.map(([px, py]) => [clamp(px), py] as const) }))
  const f = frame(title, x, Math.max(0, ...inRange.flatMap((s) => s.points.map((p) => p[1]))), o.yTitle ?? "", o.integer ?? true)
  const named = inRange.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length]! }))
  for (const s of named)
    if (s.points.length)
      f.parts.push(
        `<polyline data-series="${esc(s.name)}" fill="none" stroke="${s.color}" stroke-width="${s.dashed ? 1.2 : 2}"${s.dashed ? ' stroke-dasharray="4 3"' : ""} ` +
          `points="${s.points.map(([px, py]) => `${f.sx(px).toFixed(1)},${f.sy(py).toFixed(1)}`).join(" ")}"/>`
      )
  legend(f, named)
  f.parts.push("</svg>")
  return f.parts.join("")
}

/** Stacked bars, one per bucket [starts[i], starts[i] + width) clipped to the axis's range. */
export const stackedBars = (
  title: string,
  x: XAxis,
  buckets: { readonly starts: ReadonlyArray<number>; readonly width: number },
  series: ReadonlyArray<BarSeries>,
  o: { yTitle?: string } = {}
) => {
  const totals = buckets.starts.map((_, i) => series.reduce((n, s) => n + (s.values[i] ?? 0), 0))
  const f = frame(title, x, Math.max(0, ...totals), o.yTitle ?? "", true)
  const named = series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length]! }))
  buckets.starts.forEach((start, i) => {
    const a = Math.max(x.from, start),
      b = Math.min(x.to, start + buckets.width)
    if (b <= a) return
    const x0 = f.sx(a),
      w = Math.max(0.5, f.sx(b) - x0 - (f.sx(b) - x0 > 3 ? 1 : 0))
    let base = 0
    for (const s of named) {
      const v = s.values[i] ?? 0
      if (v > 0)
        f.parts.push(
          `<rect data-series="${esc(s.name)}" data-at="${start}" data-value="${v}" x="${x0.toFixed(1)}" y="${f.sy(base + v).toFixed(1)}" ` +
            `width="${w.toFixed(1)}" height="${(f.sy(base) - f.sy(base + v)).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name}: ${v}`)}</title></rect>`
        )
      base += v
    }
  })
  legend(f, named)
  f.parts.push("</svg>")
  return f.parts.join("")
}

/** Horizontal bars with labels (reply codes, percentiles). */
export const barList = (
  title: string,
  bars: ReadonlyArray<{ label: string; value: number; color?: string }>,
  o: { width?: number; unit?: (v: number) => string } = {}
): string => {
  const width = o.width ?? 560,
    row = 20,
    left = 150
  const height = T + Math.max(1, bars.length) * row + 8
  const max = Math.max(1, ...bars.map((b) => b.value))
  const unit = o.unit ?? ((v: number) => v.toLocaleString("en-US"))
  const parts = [
    `<svg role="img" aria-label="${esc(title)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<text x="0" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`
  ]
  if (bars.length === 0) parts.push(`<text x="${left}" y="${T + 13}" font-size="11" fill="#777">none</text>`)
  bars.forEach((b, i) => {
    const w = (b.value / max) * (width - left - 90)
    parts.push(
      `<text x="${left - 6}" y="${T + i * row + 13}" font-size="11" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${left}" y="${T + i * row + 3}" width="${w.toFixed(1)}" height="${row - 6}" fill="${b.color ?? PALETTE[0]!}"/>`,
      `<text x="${left + w + 4}" y="${T + i * row + 13}" font-size="11">${esc(unit(b.value))}</text>`
    )
  })
  parts.push("</svg>")
  return parts.join("")
}
