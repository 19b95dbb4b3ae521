// Header edits the scanners and milters ask for, on a message as bytes (CRLF, dot-unstuffed): add fields at the top,
// remove fields by name (with their folded continuation lines), replace the Subject. Never touches the body and never
// re-encodes anything. Security: a value with CR or LF would inject fields; values are folded onto one line first.
const CRLF = Buffer.from("\r\n")

/** The offset just past the header section's last CRLF (the blank line's start), or the whole length when no body. */
const headerLength = (message: Buffer): number => {
  if (message.subarray(0, 2).equals(CRLF)) return 0
  const end = message.indexOf("\r\n\r\n")
  return end < 0 ? message.length : end + 2
}

/** One header line: the name, a colon, the value with any CR/LF turned into spaces. */
const line = (name: string, value: string): string => `${name}: ${value.replace(/[\r\n]+/g, " ").trim()}\r\n`

/** Adds fields at the top of the header section, in the order given (as trace and scanner fields are added). */
export const prepend = (message: Buffer, fields: ReadonlyArray<readonly [string, string]>): Buffer =>
  fields.length === 0 ? message : Buffer.concat([Buffer.from(fields.map(([n, v]) => line(n, v)).join(""), "latin1"), message])

/** The header section's fields, each with its continuation lines, as [start, end) byte ranges and lower-case name. */
const fields = (message: Buffer): Array<{ name: string; start: number; end: number }> => {
  const out: Array<{ name: string; start: number; end: number }> = []
  const limit = headerLength(message)
  let at = 0
  while (at < limit) {
    let next = message.indexOf("\r\n", at)
    next = next < 0 || next + 2 > limit ? limit : next + 2
    const first = message.subarray(at, next).toString("latin1")
    if (/^[ \t]/.test(first) && out.length > 0) out[out.length - 1]!.end = next
    else
      out.push({
        name: first
          .slice(0, Math.max(0, first.indexOf(":")))
          .trim()
          .toLowerCase(),
        start: at,
        end: next
      })
    at = next
  }
  return out
}

/** Removes every field whose name is in `names` (case-insensitive). */
export const remove = (message: Buffer, names: ReadonlyArray<string>): Buffer => {
  if (names.length === 0) return message
  const drop = new Set(names.map((n) => n.toLowerCase()))
  const kept: Buffer[] = []
  let at = 0
  for (const f of fields(message)) {
    if (!drop.has(f.name)) continue
    kept.push(message.subarray(at, f.start))
    at = f.end
  }
  kept.push(message.subarray(at))
  return Buffer.concat(kept)
}

/** The value of the first field named `name` (unfolded), if any. */
export const get = (message: Buffer, name: string): string | undefined => {
  const f = fields(message).find((x) => x.name === name.toLowerCase())
  if (f === undefined) return undefined
  const text = message.subarray(f.start, f.end).toString("latin1")
  return text
    .slice(text.indexOf(":") + 1)
    .replace(/\r\n[ \t]+/g, " ")
    .trim()
}

/** Replaces the first Subject where it stands (or adds one at the top when there is none). */
export const setSubject = (message: Buffer, subject: string): Buffer => {
  const f = fields(message).find((x) => x.name === "subject")
  if (f === undefined) return prepend(message, [["Subject", subject]])
  return Buffer.concat([message.subarray(0, f.start), Buffer.from(line("Subject", subject), "utf8"), message.subarray(f.end)])
}

/** Adds fields at the end of the header section (a milter's SMFIR_ADDHEADER). */
export const append = (message: Buffer, fields: ReadonlyArray<readonly [string, string]>): Buffer => {
  if (fields.length === 0) return message
  const at = headerLength(message)
  return Buffer.concat([message.subarray(0, at), Buffer.from(fields.map(([n, v]) => line(n, v)).join(""), "latin1"), message.subarray(at)])
}

/** Inserts a field before the `index`-th field (0: at the top; past the end: appended), as SMFIR_INSHEADER does. */
export const insert = (message: Buffer, index: number, name: string, value: string): Buffer => {
  const all = fields(message)
  if (index >= all.length) return append(message, [[name, value]])
  const at = index <= 0 ? 0 : all[index]!.start
  return Buffer.concat([message.subarray(0, at), Buffer.from(line(name, value), "latin1"), message.subarray(at)])
}

/** Replaces the `occurrence`-th (1-based) field named `name`; an empty value removes it (SMFIR_CHGHEADER). */
export const change = (message: Buffer, name: string, occurrence: number, value: string): Buffer => {
  const same = fields(message).filter((f) => f.name === name.toLowerCase())
  const f = same[Math.max(1, occurrence) - 1]
  if (f === undefined) return value === "" ? message : append(message, [[name, value]])
  const replacement = value === "" ? Buffer.alloc(0) : Buffer.from(line(name, value), "latin1")
  return Buffer.concat([message.subarray(0, f.start), replacement, message.subarray(f.end)])
}

/** The header section as [name, raw value] pairs (value without the colon, unfolded line breaks kept as they are). */
export const list = (message: Buffer): Array<readonly [string, string]> =>
  fields(message).map((f) => {
    const text = message.subarray(f.start, f.end).toString("latin1").replace(/\r\n$/, "")
    const colon = text.indexOf(":")
    return [colon < 0 ? text : text.slice(0, colon), colon < 0 ? "" : text.slice(colon + 1)] as const
  })

/** The body: what follows the blank line (empty when there is none). */
export const body = (message: Buffer): Buffer => {
  const at = headerLength(message)
  return at >= message.length ? Buffer.alloc(0) : message.subarray(at + 2)
}
