// Time arguments of the replay commands: ISO 8601, epoch milliseconds, "now", or relative to now ("-2h", "-1d12h", "+30m").
// Pure: `now` is passed in by the caller (the CLI reads the clock once).
import { Timeline } from "@missive/events"

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** Epoch ms of a time argument, or undefined when it is not one. */
export const parseTime = (text: string, now: number): number | undefined => {
  const t = text.trim()
  if (t === "now") return now
  const rel = /^([+-])((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+)$/.exec(t)
  if (rel) {
    let ms = 0
    for (const m of rel[2]!.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) ms += Number(m[1]) * UNITS[m[2]!]!
    return Math.round(rel[1] === "-" ? now - ms : now + ms)
  }
  if (/^\d{12,}$/.test(t)) return Number(t)
  // ISO 8601 only: a date, or a date and time (with or without zone; without one it is UTC, not local time).
  if (!/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(t)) return undefined
  const hasZone = /(?:Z|[+-]\d{2}:?\d{2})$/.test(t) && t.length > 10
  const v = Date.parse(t.length === 10 || hasZone ? t : `${t.replace(" ", "T")}Z`)
  return Number.isNaN(v) ? undefined : v
}

export const expected = `an ISO 8601 time ("2026-05-01T14:00:00Z"), "now", or a relative time such as "-2h" or "-1d30m"`

/** ISO 8601 of epoch ms, and "1.2s", "3m04s", "2h05m": the timeline's own formatters. */
export const iso = Timeline.iso
export const formatDuration = Timeline.formatDuration
