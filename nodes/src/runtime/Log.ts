// Structured logging: one JSON object per line on stdout, with the message id on every line about a message.
// Lines are buffered and written once per turn of the event loop (one syscall for many lines); must not log
// message bodies or passwords. The logger is also an Effect service (`LogService`) with its layers.
import { Context, Layer } from "effect"
import { ClockService, type Clock } from "./Clock.js"

export type Level = "debug" | "info" | "warn" | "error"
export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void

const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export const parseLevel = (s: string | undefined): Level | undefined =>
  s === "debug" || s === "info" || s === "warn" || s === "error" ? s : undefined

export const makeLogger = (clock: Clock, opts: { level?: Level; write?: (text: string) => void } = {}): Logger => {
  const min = order[opts.level ?? parseLevel(process.env["MISSIVE_LOG_LEVEL"]) ?? "info"]
  const write = opts.write ?? ((text: string) => void process.stdout.write(text))
  let buffer = ""
  let scheduled = false
  const flush = () => {
    scheduled = false
    const text = buffer
    buffer = ""
    if (text) write(text)
  }
  process.once("exit", flush)
  return (level, msg, fields) => {
    if (order[level] < min) return
    buffer += JSON.stringify({ t: new Date(clock.now()).toISOString(), level, msg, ...fields }) + "\n"
    if (level === "error" || buffer.length > 65536) return flush()
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
}

export const silent: Logger = () => {}

/** The node's logger, as a service. */
export class LogService extends Context.Service<LogService, Logger>()("missive/Log") {}

/** JSON lines on stdout, stamped by the Clock service, at `MISSIVE_LOG_LEVEL` (info by default). */
export const layerStdout: Layer.Layer<LogService, never, ClockService> = Layer.effect(
  LogService,
  ClockService.useSync((clock) => makeLogger(clock))
)
export const layer = (logger: Logger): Layer.Layer<LogService> => Layer.succeed(LogService, logger)
export const layerSilent: Layer.Layer<LogService> = layer(silent)
