// Follows the event log from a persisted checkpoint: reads batches in global order, hands each to a handler, and
// moves the checkpoint only past what the handler finished. Once caught up it takes the events its subscription
// delivers (already decoded, in order) instead of reading them back from the store; a gap or an overflow of what
// it holds sends it back to the store. A restart resumes at the checkpoint: nothing is lost
// (a batch is handed again until it is finished) and only what followed the last saved checkpoint is handed twice.
// Must not write to the log itself, and must not skip a batch its handler failed on (it retries with a backoff).
import { mkdirSync } from "node:fs"
import { open, readFile, type FileHandle } from "node:fs/promises"
import { dirname } from "node:path"
import type { Message } from "@missive/core"
import type { EventStore } from "@missive/events"
import type { Logger } from "../runtime/Log.js"

export interface Checkpoint {
  load(): Promise<number>
  save(position: number): Promise<void>
  /** Releases what `save` keeps open (called once, after the last save). */
  close?(): Promise<void>
}

/** A checkpoint file's content: the position padded to one fixed width, so each save overwrites the whole of it. */
const WIDTH = 20

/** "r+" writes at the offset given (an "a" handle would append); "w" only when the file does not exist yet. */
const openForOverwrite = async (path: string): Promise<FileHandle> => {
  try {
    return await open(path, "r+")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
    return open(path, "w")
  }
}

/**
 * A checkpoint in a small file, overwritten in place on a file handle kept open (one positional write of 21 bytes
 * per save, no open, rename or close each time). Not synced: after a machine crash the file may hold an older position
 * (the events after it are sent again), never a later one than was saved.
 */
export const fileCheckpoint = (path: string): Checkpoint => {
  mkdirSync(dirname(path), { recursive: true })
  let handle: FileHandle | undefined
  return {
    load: async () => {
      const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return "0"
        throw e
      })
      const n = Number(text.trim())
      return Number.isSafeInteger(n) && n >= 0 ? n : 0
    },
    save: async (position) => {
      handle ??= await openForOverwrite(path)
      await handle.write(`${String(position).padEnd(WIDTH)}\n`, 0, "utf8")
    },
    close: async () => {
      await handle?.close()
      handle = undefined
    }
  }
}

export interface FollowerOptions {
  readonly name: string
  readonly events: EventStore.EventStore
  readonly checkpoint: Checkpoint
  readonly log: Logger
  /**
   * Handles a batch in log order; `done(position)` may be called as parts of it are finished (the checkpoint can
   * move mid-batch). Resolves when the whole batch is finished; a rejection hands the unfinished rest again later.
   */
  readonly handle: (batch: ReadonlyArray<EventStore.StoredEvent>, done: (position: number) => void, signal: AbortSignal) => Promise<void>
  /** Where a follower with no checkpoint starts: "start" of the log (default) or its current "end". */
  readonly from?: "start" | "end"
  readonly batchSize?: number
  /** Longest wait for new events when the store does not notify (ms). */
  readonly pollMs?: number
  /** Shortest time between two checkpoint writes (ms); the last position is always written at stop. */
  readonly saveEveryMs?: number
  /**
   * Once caught up (a read shorter than `batchSize`), how long to wait before the next read (ms; default 0), so that
   * what is appended meanwhile is read and handed as one batch instead of one event at a time.
   */
  readonly lingerMs?: number
  /**
   * Full batches when busy: the linger ends as soon as this many events of its types are held, and a batch taken
   * from the subscription holds at most this many (whole log positions; the rest waits for the next one). Without
   * it, a batch takes all that is held.
   */
  readonly lingerUntil?: number
  /**
   * The only event types the handler uses: a store that can (`readAllOf`) decodes no other, and the handler gets only
   * these; only their appends wake the follower before its next poll. Without it, or on a store without `readAllOf`,
   * the handler gets every event.
   */
  readonly types?: ReadonlyArray<Message.EventType>
}

export interface Follower {
  /** The position finished so far. */
  position(): number
  stop(): Promise<void>
}

/** Retry delay after the n-th consecutive failure of a batch: 1 s doubling to 60 s. */
export const backoffMs = (n: number): number => Math.min(60_000, 1000 * 2 ** Math.max(0, n - 1))

export const start = async (o: FollowerOptions): Promise<Follower> => {
  const batchSize = o.batchSize ?? 256
  const pollMs = o.pollMs ?? 1000
  const saveEveryMs = o.saveEveryMs ?? 200
  const lingerMs = o.lingerMs ?? 0
  const stored = await o.checkpoint.load()
  let position = stored > 0 || o.from !== "end" ? stored : await o.events.head()
  let saved = stored
  let lastSave = 0
  const abort = new AbortController()
  let wake: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  const sleep = (ms: number) =>
    new Promise<void>((done) => {
      wake = () => {
        if (timer) clearTimeout(timer)
        timer = undefined
        wake = undefined
        done()
      }
      timer = setTimeout(() => wake?.(), ms)
    })
  const lingerUntil = o.lingerUntil ?? Infinity
  /** Ends the linger under way (set while one is). */
  let full: (() => void) | undefined
  /** A wait that appends do not cut short (only stop does, and `lingerUntil` events held). */
  const linger = (ms: number) =>
    ms <= 0 || abort.signal.aborted || pending.length - taken >= lingerUntil
      ? Promise.resolve()
      : new Promise<void>((done) => {
          const t = setTimeout(finish, ms)
          function finish() {
            clearTimeout(t)
            full = undefined
            abort.signal.removeEventListener("abort", finish)
            done()
          }
          full = finish
          abort.signal.addEventListener("abort", finish, { once: true })
        })
  // What the subscription delivered and the loop has not taken: the run of log positions (runStart, runEnd] it has
  // seen without a gap and not handed out, and of it only the events the handler wants (`pending` from `taken` on, in order). Holding
  // only those keeps the follower cheap beside a busy log: the other events (most of them) are counted past, not
  // kept. When the loop falls behind by more than `held` wanted events, the run is dropped and starts again at the
  // next delivery: the loop reads the store until it reaches the new run.
  const held = 8 * batchSize
  let pending: Array<EventStore.StoredEvent> = []
  let taken = 0
  let runStart = -1
  let runEnd = -1
  const wanted = o.types ? new Set<string>(o.types) : undefined
  // Woken by an append of a wanted type only (the others are taken with the next one, or past at the next poll):
  // waking at each commit cost a follower of bounces a pass per commit.
  const unsubscribe = o.events.subscribe(await o.events.head(), (e) => {
    if (e.position !== runEnd && e.position !== runEnd + 1) {
      // The first delivery, or a gap: a new run begins with this position.
      pending = []
      taken = 0
      runStart = e.position - 1
    }
    runEnd = e.position
    if (wanted && !wanted.has(e.event.type)) return
    if (pending.length - taken >= held) {
      // The loop is far behind: hold nothing more, and let the store serve it up to the next run.
      pending = []
      taken = 0
      runStart = e.position
      return
    }
    pending.push(e)
    wake?.()
    if (full && pending.length - taken >= lingerUntil) full()
  })
  /**
   * The next events after `position` from what the subscription delivered: undefined when the run it holds does not
   * begin at or before `position` (not delivered yet, dropped, or a gap), or holds nothing past it.
   */
  const fromSubscription = (): { batch: Array<EventStore.StoredEvent>; through: number } | undefined => {
    if (runStart < 0 || position < runStart || position >= runEnd) return undefined
    while (taken < pending.length && pending[taken]!.position <= position) taken += 1
    // Whole log positions only (the events of one JetStream append share one), up to batchSize positions.
    let through = Math.min(runEnd, position + batchSize)
    let end = taken
    while (end < pending.length && pending[end]!.position <= through && end - taken < lingerUntil) end += 1
    if (end - taken >= lingerUntil && end < pending.length && pending[end]!.position <= through) {
      // Full: up to the last event taken, with the others of its position.
      through = pending[end - 1]!.position
      while (end < pending.length && pending[end]!.position === through) end += 1
    }
    const batch = pending.slice(taken, end)
    taken = end
    // What was taken is no longer held: if the handler fails on it, the store serves it again.
    runStart = through
    if (taken >= pending.length || taken >= batchSize) {
      pending = pending.slice(taken)
      taken = 0
    }
    return { batch, through }
  }

  const save = async (force: boolean) => {
    if (position === saved) return
    if (!force && performance.now() - lastSave < saveEveryMs) return
    lastSave = performance.now()
    const p = position
    await o.checkpoint.save(p)
    saved = p
  }

  const loop = async () => {
    let failures = 0
    // The last batch came from the subscription: with nothing more delivered, wait for it (or pollMs) before the store.
    let live = false
    while (!abort.signal.aborted) {
      let batch: ReadonlyArray<EventStore.StoredEvent>
      // The last position this read looked at: past events of other types, it can be beyond the batch's last.
      let through: number
      try {
        const delivered = fromSubscription()
        if (!delivered && live && position >= runEnd) {
          live = false
          await sleep(pollMs)
          continue
        }
        live = delivered !== undefined
        if (delivered) ({ batch, through } = delivered)
        else if (o.types && o.events.readAllOf) {
          const r = await o.events.readAllOf(position, batchSize, o.types)
          batch = r.events
          through = r.through
        } else {
          batch = await o.events.readAll(position, batchSize)
          through = batch.at(-1)?.position ?? position
        }
      } catch (e) {
        o.log("warn", "event follower: log read failed; retrying", { follower: o.name, position, error: String(e) })
        await sleep(backoffMs(++failures))
        continue
      }
      if (through === position) {
        await sleep(pollMs)
        await linger(lingerMs)
        continue
      }
      const caughtUp = through - position < batchSize
      try {
        await o.handle(
          batch,
          (p) => {
            if (p > position) position = p
          },
          abort.signal
        )
        position = Math.max(position, through)
        failures = 0
      } catch (e) {
        if (abort.signal.aborted) break
        failures += 1
        o.log("warn", "event follower: batch not finished; retrying", {
          follower: o.name,
          position,
          tries: failures,
          inMs: backoffMs(failures),
          error: String((e as Error)?.message ?? e)
        })
        await save(true).catch(() => {})
        await sleep(backoffMs(failures))
        continue
      }
      await save(false).catch((e: unknown) => o.log("warn", "event follower: checkpoint not saved", { follower: o.name, error: String(e) }))
      if (caughtUp) await linger(lingerMs)
    }
  }
  const running = loop()

  return {
    position: () => position,
    stop: async () => {
      abort.abort()
      unsubscribe()
      wake?.()
      await running
      await save(true).catch((e: unknown) => o.log("warn", "event follower: checkpoint not saved", { follower: o.name, error: String(e) }))
      await o.checkpoint.close?.().catch(() => {})
    }
  }
}
