// Message bodies in append-only segment files beside the database (`<db dir>/bodies/NNNNNNNN.seg`), so that a body
// is written to the disk once: the SQLite writer appends a batch's bodies to the open segment and fdatasyncs it once,
// and only then commits the batch, whose rows (table body_refs) say where each body lies. A crash before that commit
// leaves unreferenced bytes, never a reference to bytes that are not on the disk. A segment no row refers to any more
// is unlinked after the commit that freed it; a sealed one mostly freed has its live bodies copied forward first.
// Plain JavaScript (the writer thread loads it without a TS loader). Only the writer writes; readers use `readAt`.
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, statSync, unlinkSync, writeSync } from "node:fs"
import { dirname, join } from "node:path"

/** A segment is sealed, and the next one begun, once it holds this many bytes. */
export const SEGMENT_BYTES = 16 * 1024 * 1024
/** A sealed segment whose live bodies take less than this share of it is compacted (they are copied forward). */
const COMPACT_BELOW = 1 / 8

export const segmentsDirOf = (dbPath) => join(dirname(dbPath), "bodies")
const fileOf = (dir, segment) => join(dir, `${String(segment).padStart(8, "0")}.seg`)
const numberOf = (name) => (/^\d{8}\.seg$/.test(name) ? Number(name.slice(0, 8)) : undefined)

/** Reads `length` bytes at `offset` of a segment; undefined when the segment is gone (its bodies were deleted). */
export const readAt = (dir, segment, offset, length) => {
  let fd
  try {
    fd = openSync(fileOf(dir, segment), "r")
  } catch (e) {
    if (e?.code === "ENOENT") return undefined
    throw e
  }
  try {
    const out = Buffer.allocUnsafe(length)
    let got = 0
    while (got < length) {
      const n = readSync(fd, out, got, length - got, offset + got)
      if (n === 0) return undefined
      got += n
    }
    return out
  } finally {
    closeSync(fd)
  }
}

const syncDir = (dir) => {
  const fd = openSync(dir, "r")
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * The writer's side. `live` is what the committed rows say: [segment, bodies, bytes] per referenced segment. Files no
 * row refers to are left-overs of a crash (bytes written, commit lost) or of a crash between a commit and an unlink:
 * they are removed. Writing always begins a new segment, so a torn tail of an old one is never appended to.
 */
export const openWriter = (dir, live, segmentBytes = SEGMENT_BYTES) => {
  mkdirSync(dir, { recursive: true })
  /** segment → { count, bytes, size } (size: the file's length once sealed) */
  const segments = new Map()
  for (const [segment, count, bytes] of live) segments.set(segment, { count, bytes, size: 0 })
  let highest = 0
  for (const name of readdirSync(dir)) {
    const n = numberOf(name)
    if (n === undefined) continue
    highest = Math.max(highest, n)
    const s = segments.get(n)
    if (s) s.size = statSync(join(dir, name)).size
    else unlinkSync(join(dir, name))
  }
  for (const n of segments.keys()) highest = Math.max(highest, n)
  let current = highest
  let fd
  let position = 0
  let dirty = false
  /** Segments sealed since the last settle: their bodies' rows may be in the batch still to commit. */
  let sealed = []

  const begin = () => {
    if (fd !== undefined) {
      const s = segments.get(current)
      if (s) s.size = position
      closeSync(fd)
      sealed.push({ segment: current, size: position })
    }
    current += 1
    fd = openSync(fileOf(dir, current), "wx")
    position = 0
    // the new file's name must survive a power loss before any body in it is acknowledged
    syncDir(dir)
  }

  /** Seals the open segment after a failed write or sync: the next append begins a new one. */
  const abandon = () => {
    const s = segments.get(current)
    if (s) s.size = position
    try {
      closeSync(fd)
    } catch {
      // already unusable
    }
    sealed.push({ segment: current, size: position })
    fd = undefined
    dirty = false
  }

  /** Removes a sealed segment no committed row refers to. */
  const drop = (segment) => {
    const s = segments.get(segment)
    if (s && s.count > 0) return
    try {
      unlinkSync(fileOf(dir, segment))
    } catch (e) {
      if (e?.code !== "ENOENT") throw e
    }
    segments.delete(segment)
  }

  return {
    /** Appends a body to the open segment (not yet synced): where it lies. */
    append: (bytes) => {
      if (fd === undefined || (position > 0 && position + bytes.length > segmentBytes)) begin()
      try {
        let done = 0
        while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done)
      } catch (e) {
        abandon()
        throw e
      }
      const at = { segment: current, offset: position, length: bytes.length }
      position += bytes.length
      dirty = true
      return at
    },
    /** Makes every appended body durable: one fdatasync for the whole batch. Called before the batch commits. */
    sync: () => {
      if (!dirty) return
      try {
        fdatasyncSync(fd)
      } catch (e) {
        // after a failed fsync the file's state is unknown (the kernel may have dropped the dirty pages): the batch
        // fails, and nothing more is written to this segment
        abandon()
        throw e
      }
      dirty = false
    },
    /** After a commit: the bodies it added (+1) and removed (−1), as [segment, ±1, length]; unlinks freed segments. */
    settle: (deltas) => {
      const touched = new Set()
      for (const [segment, sign, length] of deltas) {
        const s = segments.get(segment) ?? { count: 0, bytes: 0, size: 0 }
        s.count += sign
        s.bytes += sign * length
        segments.set(segment, s)
        touched.add(segment)
      }
      for (const { segment, size } of sealed) {
        const s = segments.get(segment)
        if (s) s.size = size
        touched.add(segment)
      }
      sealed = []
      for (const segment of touched) if (segment !== current) drop(segment)
    },
    /** A sealed segment worth compacting (few live bytes left), or undefined. */
    sparse: () => {
      for (const [segment, s] of segments)
        if (segment !== current && s.count > 0 && s.size > 0 && s.bytes < s.size * COMPACT_BELOW) return segment
      return undefined
    },
    /** Reads a body of a segment (for compaction). */
    read: (segment, offset, length) => readAt(dir, segment, offset, length),
    close: () => {
      if (fd !== undefined) closeSync(fd)
      fd = undefined
    }
  }
}
