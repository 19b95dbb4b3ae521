// Structured logging: one JSON object per line on stdout, with the message id on every line about a message.
// Must not log message bodies or passwords.
import type { Clock } from "./Clock.js"

export type Level = "debug" | "info" | "warn" | "error"
export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void

const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export const makeLogger = (clock: Clock, opts: { level?: Level; write?: (line: string) => void } = {}): Logger => {
  const min = order[opts.level ?? "info"]
  const write = opts.write ?? ((line: string) => void process.stdout.write(line + "\n"))
  return (level, msg, fields) => {
    if (order[level] < min) return
    write(JSON.stringify({ t: new Date(clock.now()).toISOString(), level, msg, ...fields }))
  }
}

export const silent: Logger = () => {}
