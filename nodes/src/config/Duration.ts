// Durations as operators write them: "300ms", "5s", "5m", "1h", "5d", or a bare number of milliseconds.
// Pure parsing to milliseconds; reporting a bad value (and where it was) is Config.ts's job.
// Effect's Duration wants "5 minutes"; Postfix and most MTAs write "5m", so we parse that form here.

const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

const pattern = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/

/** What a duration may look like, for error messages. */
export const expected = `a duration such as "300ms", "5s", "5m", "1h", "5d" or a number of milliseconds`

/** Milliseconds, or `undefined` when `input` is not a duration. A bare number is milliseconds and must be a whole number. */
export const parse = (input: unknown): number | undefined => {
  if (typeof input === "number") return Number.isSafeInteger(input) && input >= 0 ? input : undefined
  if (typeof input !== "string") return undefined
  const match = pattern.exec(input)
  if (match === null) return undefined
  const ms = Math.round(Number(match[1]) * unitMs[match[2] as keyof typeof unitMs])
  return Number.isSafeInteger(ms) ? ms : undefined
}
