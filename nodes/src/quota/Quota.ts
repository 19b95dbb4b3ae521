// Sending quotas per authenticated user, as SES has them: a maximum send rate (messages per second) and a 24-hour
// quota. Counts accepted messages in one-second and one-minute buckets; at start the 24-hour window is rebuilt from
// the log (MessageReceived events with that user), so a restart does not reset anyone's quota. Must not refuse
// anything itself: ingress asks `check` at MAIL and answers 451 4.7.1 with the reason.
import { Reply } from "@missive/core"
import { EventStore } from "@missive/events"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"

const DAY_MS = 86_400_000
const MINUTE_MS = 60_000

export interface Limits {
  readonly perSecond: number | null
  readonly perDay: number | null
}

export interface Quota {
  /** The refusal for a user over a limit now, or undefined. */
  check(user: string): Reply.Reply | undefined
  /** One message accepted for the user (now, or at a recorded time when the window is rebuilt). */
  record(user: string, at?: number): void
  /** Messages counted for the user in the last 24 hours and the last second. */
  usage(user: string): { readonly day: number; readonly second: number }
}

interface Usage {
  /** Accepted-message counts by minute (epoch minute → count), the last 24 hours. */
  readonly minutes: Map<number, number>
  second: number
  inSecond: number
}

export const limitsOf = (config: Config, user: string): Limits => {
  const own = config.quotas.users[user]
  return {
    perSecond: own?.per_second ?? config.quotas.per_second,
    perDay: own?.per_day ?? config.quotas.per_day
  }
}

/** Whether any quota is configured at all (no quota: nothing is counted). */
export const enabled = (config: Config): boolean =>
  config.quotas.per_second !== null ||
  config.quotas.per_day !== null ||
  Object.values(config.quotas.users).some((u) => u.per_second !== null || u.per_day !== null)

export const make = (limits: (user: string) => Limits, clock: Clock): Quota => {
  const users = new Map<string, Usage>()
  const usageOf = (user: string): Usage => {
    let u = users.get(user)
    if (!u) users.set(user, (u = { minutes: new Map(), second: 0, inSecond: 0 }))
    return u
  }
  const count = (user: string, at: number) => {
    const u = usageOf(user)
    const minute = Math.floor(at / MINUTE_MS)
    u.minutes.set(minute, (u.minutes.get(minute) ?? 0) + 1)
    const second = Math.floor(at / 1000)
    if (second === u.second) u.inSecond += 1
    else if (second > u.second) {
      u.second = second
      u.inSecond = 1
    }
  }
  const usage = (user: string) => {
    const u = users.get(user)
    if (!u) return { day: 0, second: 0 }
    const now = clock.now()
    const oldest = Math.floor((now - DAY_MS) / MINUTE_MS)
    let day = 0
    for (const [m, n] of u.minutes) {
      if (m <= oldest) u.minutes.delete(m)
      else day += n
    }
    return { day, second: Math.floor(now / 1000) === u.second ? u.inSecond : 0 }
  }
  return {
    check: (user) => {
      const l = limits(user)
      if (l.perSecond === null && l.perDay === null) return undefined
      const u = usage(user)
      if (l.perSecond !== null && u.second >= l.perSecond) return Reply.Replies.overQuota(`${l.perSecond} messages per second`)
      if (l.perDay !== null && u.day >= l.perDay) return Reply.Replies.overQuota(`${l.perDay} messages per 24 hours`)
      return undefined
    },
    record: (user, at) => count(user, at ?? clock.now()),
    usage
  }
}

/** Hands every message accepted for a user in the last 24 hours, from the log, to `into`; gives their number. */
export const rebuild = async (events: EventStore.EventStore, clock: Clock, into: (user: string, at: number) => void): Promise<number> => {
  let after = Math.max(0, (await EventStore.positionAt(events, clock.now() - DAY_MS)) - 1)
  let counted = 0
  for (;;) {
    const batch = await events.readAll(after, 1000)
    if (batch.length === 0) return counted
    for (const { event: e } of batch)
      if (e.type === "MessageReceived" && e.client.user !== undefined && e.dsnOf === undefined) {
        into(e.client.user, e.at)
        counted += 1
      }
    after = batch[batch.length - 1]!.position
  }
}

/** A quota for the node: its last 24 hours rebuilt from the log, then counting what intake accepts. */
export const open = async (config: Config, events: EventStore.EventStore, clock: Clock): Promise<Quota> => {
  const quota = make((user) => limitsOf(config, user), clock)
  await rebuild(events, clock, (user, at) => quota.record(user, at))
  return quota
}
