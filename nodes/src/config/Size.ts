// Sizes as operators write them: "10MB", "512KB", "1GiB", or a bare number of bytes.
// Pure parsing to bytes; reporting a bad value (and where it was) is Config.ts's job.
// KB/MB/GB/TB are decimal (1000), KiB/MiB/GiB/TiB binary (1024); units are case-insensitive.
// Effect's ByteSize is unstable and spells kilobytes "kB" only, so "512KB" would fail there.

const unitBytes: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40
}

const pattern = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i

/** What a size may look like, for error messages. */
export const expected = `a size such as "512KB", "10MB", "1GiB" or a number of bytes`

/** Bytes, or `undefined` when `input` is not a size. A bare number is bytes and must be a whole number. */
export const parse = (input: unknown): number | undefined => {
  if (typeof input === "number") return Number.isSafeInteger(input) && input >= 0 ? input : undefined
  if (typeof input !== "string") return undefined
  const match = pattern.exec(input)
  if (match === null) return undefined
  const unit = unitBytes[match[2]!.toLowerCase()]
  if (unit === undefined) return undefined
  const bytes = Math.round(Number(match[1]) * unit)
  return Number.isSafeInteger(bytes) ? bytes : undefined
}
