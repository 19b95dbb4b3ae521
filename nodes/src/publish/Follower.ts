// Follows the event log from a persisted checkpoint: reads batches in global order, hands each to a handler, and
// moves the checkpoint only past what the handler finished. Once caught up it takes the events its subscription
// delivers (already decoded, in order) instead of reading them back from the store; a gap or an overflow of what
// it holds sends it back to the store. A restart resumes at the checkpoint: nothing is lost
// (a batch is handed again until it is finished) and only what followed the last saved checkpoint is handed twice.
// Must not write to the log itself, and must not skip a batch its handler failed on (it retries with a backoff).
import { mkdirSync } from "node:fs"
import { readFile, rename, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import type { Message } from "@missive/core"
import type { EventStore } from "@missive/events"
import type { Logger } from "../runtime/Log.js"

export interface Checkpoint {
  load(): Promise<number>
  save(position: number): Promise<void>
}

/** A checkpoint in a small file (written to a temporary name, then renamed over the old one: never half-written). */
export const fileCheckpoint = (path: string): Checkpoint => {
  mkdirSync(dirname(path), { recursive: true })
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
      await writeFile(`${path}.tmp`, `${position}\n`)
      await rename(`${path}.tmp`, path)
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
  /** A wait that appends do not cut short (only stop does). */
  const linger = (ms: number) =>
    ms <= 0 || abort.signal.aborted
      ? Promise.resolve()
      : new Promise<void>((done) => {
          const t = setTimeout(finish, ms)
          function finish() {
            clearTimeout(t)
            abort.signal.removeEventListener("abort", finish)
            done()
          }
          abort.signal.addEventListener("abort", finish, { once: true })
        })
  // What the subscription delivered and the loop has not taken: a contiguous run of the log, in order. Emptied when
  // it outgrows `held` (the loop is behind: it reads the store instead, and takes the run once it reaches it).
  const held = 8 * batchSize
  let pending: Array<EventStore.StoredEvent> = []
  let taken = 0
  const wanted = o.types ? new Set<string>(o.types) : undefined
  // Woken by an append of a wanted type only (the others are taken with the next one, or past at the next poll):
  // waking at each commit cost a follower of bounces a pass per commit.
  const unsubscribe = o.events.subscribe(await o.events.head(), (e) => {
    const last = pending.length > taken ? pending[pending.length - 1]!.position : undefined
    if ((last !== undefined && e.position !== last && e.position !== last + 1) || pending.length - taken >= held) {
      pending = []
      taken = 0
    }
    pending.push(e)
    if (!wanted || wanted.has(e.event.type)) wake?.()
  })
  /**
   * The next events after `position` from what the subscription delivered: undefined when it does not hold the event
   * right after `position` (not delivered yet, dropped, or a gap), so the store must be read.
   */
  const fromSubscription = (): { batch: Array<EventStore.StoredEvent>; through: number } | undefined => {
    while (taken < pending.length && pending[taken]!.position <= position) taken += 1
    if (taken >= pending.length || pending[taken]!.position !== position + 1) return undefined
    const batch: Array<EventStore.StoredEvent> = []
    let through = position
    let looked = 0
    // Whole log positions only (the events of one JetStream append share one), up to batchSize positions.
    while (taken < pending.length && (looked < batchSize || pending[taken]!.position === through)) {
      const e = pending[taken]!
      if (e.position !== through) looked += 1
      through = e.position
      if (!wanted || wanted.has(e.event.type)) batch.push(e)
      taken += 1
    }
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
        if (!delivered && live && taken >= pending.length) {
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
    }
  }
}
