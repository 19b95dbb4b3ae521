// Structured logging: one JSON object per line on stdout (or, with `log.format: human`, one readable line: time,
// level, message, then key=value), with the message id on every line about a message. Lines are buffered and
// written once per turn of the event loop (one syscall for many lines); must not log message bodies or passwords.
// The logger is also an Effect service (`LogService`) with its layers.
import { Context, Layer } from "effect"
import { ClockService, type Clock } from "./Clock.js"

export type Level = "debug" | "info" | "warn" | "error"
export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void

const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export const parseLevel = (s: string | undefined): Level | undefined =>
  s === "debug" || s === "info" || s === "warn" || s === "error" ? s : undefined

export type Format = "json" | "human"

const LABEL: Record<Level, string> = { debug: "DEBUG", info: "INFO ", warn: "WARN ", error: "ERROR" }

/** A value as a human reads it in a key=value list: bare when it has no space or quote, else JSON. */
const humanValue = (v: unknown): string =>
  typeof v === "string" ? (/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)) : String(JSON.stringify(v))

/** One line for a terminal: "2026-11-30T02:00:00.000Z INFO  received id=… from=…". */
export const humanLine = (t: string, level: Level, msg: string, fields?: Record<string, unknown>): string => {
  const rest = Object.entries(fields ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${humanValue(v)}`)
    .join(" ")
  return `${t} ${LABEL[level]} ${msg}${rest ? ` ${rest}` : ""}\n`
}

export const makeLogger = (clock: Clock, opts: { level?: Level; format?: Format; write?: (text: string) => void } = {}): Logger => {
  // MISSIVE_LOG_LEVEL, when set, overrides the configured level (a one-off debug run without editing the file).
  const min = order[parseLevel(process.env["MISSIVE_LOG_LEVEL"]) ?? opts.level ?? "info"]
  const human = opts.format === "human"
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
    const t = new Date(clock.now()).toISOString()
    buffer += human ? humanLine(t, level, msg, fields) : JSON.stringify({ t, level, msg, ...fields }) + "\n"
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

/** Lines on stdout, stamped by the Clock service, in the configured format at the configured level (JSON, info). */
export const layerStdout = (opts: { level?: Level; format?: Format } = {}): Layer.Layer<LogService, never, ClockService> =>
  Layer.effect(
    LogService,
    ClockService.useSync((clock) => makeLogger(clock, opts))
  )
export const layer = (logger: Logger): Layer.Layer<LogService> => Layer.succeed(LogService, logger)
export const layerSilent: Layer.Layer<LogService> = layer(silent)
