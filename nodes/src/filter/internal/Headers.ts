// The header section of a message as raw fields (name, the whole folded field), for filters that read or remove
// header fields. Works on bytes as received (latin1 round-trips every byte); must not re-encode or reflow anything.
// Linear in the size of the header section, whatever its folding.

export interface Field {
  /** Lower-case field name. */
  readonly name: string
  /** The unfolded value, trimmed. */
  readonly value: string
  readonly start: number
  /** Offset after the field's last CRLF. */
  readonly end: number
}

/** Offset of the blank line that ends the header section (the whole message when there is none). */
const sectionEnd = (m: Buffer): number => {
  if (m.length >= 2 && m[0] === 13 && m[1] === 10) return 0
  const i = m.indexOf("\r\n\r\n")
  return i < 0 ? m.length : i + 2
}

export const fields = (m: Buffer): Array<Field> => {
  const end = sectionEnd(m)
  const text = m.toString("latin1", 0, end)
  const out: Array<Field> = []
  let pos = 0
  while (pos < text.length) {
    let next = text.indexOf("\r\n", pos)
    next = next < 0 ? text.length : next + 2
    // continuation lines (starting with SP or HT) belong to this field
    while (next < text.length && (text[next] === " " || text[next] === "\t")) {
      const n = text.indexOf("\r\n", next)
      next = n < 0 ? text.length : n + 2
    }
    const raw = text.slice(pos, next)
    const colon = raw.indexOf(":")
    if (colon > 0)
      out.push({
        name: raw.slice(0, colon).trim().toLowerCase(),
        value: raw
          .slice(colon + 1)
          .replace(/\r\n(?=[ \t])/g, "")
          .trim(),
        start: pos,
        end: next
      })
    pos = next
  }
  return out
}

/** The message without the fields `drop` picks; the same Buffer when it picks none. */
export const remove = (m: Buffer, drop: (name: string, value: string) => boolean): Buffer => {
  const gone = fields(m).filter((f) => drop(f.name, f.value))
  if (gone.length === 0) return m
  const parts: Array<Buffer> = []
  let at = 0
  for (const f of gone) {
    parts.push(m.subarray(at, f.start))
    at = f.end
  }
  parts.push(m.subarray(at))
  return Buffer.concat(parts)
}

/** The first field of that (lower-case) name. */
export const first = (m: Buffer, name: string): Field | undefined => fields(m).find((f) => f.name === name)
