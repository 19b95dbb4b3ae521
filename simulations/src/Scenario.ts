// A load-test scenario: one YAML file (snake_case keys) describing senders, simulated receiving domains with their
// behaviour over time, the retry policy of the MTA under test, and faults. Validated by an Effect Schema; every problem
// is reported at once with its key path (and line:col when a file name is given), like `missive config check`.
// Reads and checks only: it opens no socket and starts nothing.
import { readFileSync, readdirSync } from "node:fs"
import { join, resolve } from "node:path"
import { Effect, Result as EffectResult, Schema, SchemaAST, SchemaTransformation } from "effect"
import { LineCounter, parseDocument } from "yaml"
import { Duration, Problems, Size } from "@missive/node"

// ---------------------------------------------------------------------------------------------
// Values (the same "expected <what>, got <input>" shape as the node's configuration).

const parsed = <T>(to: Schema.Codec<T>, expected: string, parse: (input: unknown) => T | undefined) =>
  Schema.Unknown.check(Schema.makeFilter((input: unknown) => parse(input) !== undefined, { expected })).pipe(
    Schema.decodeTo(to, SchemaTransformation.transform<T, unknown>({ decode: (input) => parse(input) as T, encode: (value) => value }))
  )

const field = <S extends Schema.Top>(schema: S, value: S["Type"]) => schema.pipe(Schema.withDecodingDefaultTypeKey(Effect.succeed(value)))

const integer = (min: number, expected: string) =>
  parsed(Schema.Number, expected, (u) => (typeof u === "number" && Number.isSafeInteger(u) && u >= min ? u : undefined))

const Count = integer(1, "a positive integer")
const Natural = integer(0, "a whole number (0 or more)")
const Positive = parsed(Schema.Number, "a positive number", (u) => (typeof u === "number" && Number.isFinite(u) && u > 0 ? u : undefined))
const Weight = parsed(Schema.Number, "a weight (a number of at least 0)", (u) =>
  typeof u === "number" && Number.isFinite(u) && u >= 0 ? u : undefined
)
const Fraction = parsed(Schema.Number, "a fraction from 0 to 1", (u) => (typeof u === "number" && u >= 0 && u <= 1 ? u : undefined))
const Bool = parsed(Schema.Boolean, "true or false", (u) => (typeof u === "boolean" ? u : undefined))
const Text = parsed(Schema.String, "a non-empty string", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined))
const Dur = parsed(Schema.Number, Duration.expected, Duration.parse)
const PositiveDur = parsed(Schema.Number, `a positive ${Duration.expected.slice(2)}`, (u) => {
  const ms = Duration.parse(u)
  return ms !== undefined && ms > 0 ? ms : undefined
})
const Bytes = parsed(Schema.Number, Size.expected, Size.parse)
const label = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
const domainPattern = new RegExp(`^${label}(?:\\.${label})+$`)
const Domain = parsed(Schema.String, "a domain name with at least two labels", (u) => {
  if (typeof u !== "string") return undefined
  const d = u.trim().toLowerCase().replace(/\.$/, "")
  return domainPattern.test(d) ? d : undefined
})
const oneOf = <const L extends ReadonlyArray<string>>(values: L) =>
  parsed(Schema.Literals(values), values.map((v) => JSON.stringify(v)).join(" or "), (u) =>
    values.includes(u as string) ? (u as L[number]) : undefined
  )

// ---------------------------------------------------------------------------------------------
// Receiver behaviour. A `schedule` entry overrides some of these keys between two scenario times.

const Throttle = Schema.Struct({
  /** 421 and close after this many messages on one connection. */
  per_connection: Schema.optionalKey(Count),
  /** 421 and close once this many messages arrived in the current minute (scenario time). */
  per_minute: Schema.optionalKey(Count)
})

const behaviourFields = {
  /** Wait before the greeting and before each reply to MAIL, RCPT and DATA. */
  latency: Dur,
  /** Share of recipients answered 451 at RCPT, drawn per message tag + recipient + attempt. */
  temp_fail: Fraction,
  /** Share of recipients answered 550 at RCPT, drawn per message tag + recipient (the same on every attempt). */
  perm_fail: Fraction,
  /** First attempt of each message answered 451 4.7.1 (greylisting), later ones pass. */
  greylist: Bool,
  throttle: Schema.NullOr(Throttle),
  /** Share of DATA transfers cut (the connection dropped before the final reply), per tag + attempt. */
  disconnect_in_data: Fraction,
  /** Wait before the reply to the final dot of DATA. */
  slow_data: Dur
} as const

export const Behaviour = Schema.Struct({
  latency: field(behaviourFields.latency, 0),
  temp_fail: field(behaviourFields.temp_fail, 0),
  perm_fail: field(behaviourFields.perm_fail, 0),
  greylist: field(behaviourFields.greylist, false),
  throttle: field(behaviourFields.throttle, null),
  disconnect_in_data: field(behaviourFields.disconnect_in_data, 0),
  slow_data: field(behaviourFields.slow_data, 0)
})
export type Behaviour = typeof Behaviour.Type

const BehaviourPatch = Schema.Struct({
  latency: Schema.optionalKey(behaviourFields.latency),
  temp_fail: Schema.optionalKey(behaviourFields.temp_fail),
  perm_fail: Schema.optionalKey(behaviourFields.perm_fail),
  greylist: Schema.optionalKey(behaviourFields.greylist),
  throttle: Schema.optionalKey(behaviourFields.throttle),
  disconnect_in_data: Schema.optionalKey(behaviourFields.disconnect_in_data),
  slow_data: Schema.optionalKey(behaviourFields.slow_data)
})

const Phase = Schema.Struct({ from: Dur, to: Dur, behaviour: BehaviourPatch }).check(
  Schema.makeFilter((p) => (p.to <= p.from ? { path: ["to"], issue: "must be later than from" } : undefined))
)

const Destination = Schema.Struct({
  domain: Domain,
  /** Share of recipients addressed to this domain. */
  weight: field(Weight, 1),
  /** MX hosts, each a receiver on its own loopback address. */
  mx: field(Count, 1),
  /** Offer STARTTLS. */
  tls: field(Bool, false),
  behaviour: field(Behaviour, Schema.decodeUnknownSync(Behaviour)({})),
  schedule: field(Schema.Array(Phase), [])
})

const SizeWeight = Schema.Struct({ size: Bytes, weight: field(Weight, 1) })

const Senders = Schema.Struct({
  /** Concurrent SMTP client connections into the target. */
  connections: field(Count, 4),
  /** open: messages arrive at `rate` whatever the target does; closed: each connection sends its next when answered. */
  loop: field(oneOf(["open", "closed"]), "open"),
  /** Messages per second (open loop), reached after `ramp_up`. */
  rate: field(Positive, 10),
  /** Total messages; default for the open loop: what `rate` over `duration` gives. Required for the closed loop. */
  messages: field(Schema.NullOr(Count), null),
  ramp_up: field(Dur, 0),
  sizes: field(Schema.Array(SizeWeight).check(Schema.makeFilter((a) => (a.length === 0 ? "needs at least one size" : undefined))), [
    { size: 4000, weight: 1 }
  ]),
  recipients: field(
    Schema.Struct({ min: field(Count, 1), max: field(Count, 1) }).check(
      Schema.makeFilter((r) => (r.max < r.min ? { path: ["max"], issue: "must not be less than min" } : undefined))
    ),
    { min: 1, max: 1 }
  ),
  /** Envelope sender domains; each gets a simulated receiver that collects DSNs. */
  domains: field(Schema.Array(Domain).check(Schema.makeFilter((a) => (a.length === 0 ? "needs at least one domain" : undefined))), [
    "senders.sim"
  ]),
  auth: field(Schema.NullOr(Schema.Struct({ user: Text, password: Text })), null),
  /** STARTTLS towards the target. */
  tls: field(Bool, false)
})

const Retry = Schema.Struct({
  initial: field(PositiveDur, 1_000),
  max: field(PositiveDur, 5_000),
  multiplier: field(
    parsed(Schema.Number, "a number of at least 1", (u) => (typeof u === "number" && u >= 1 ? u : undefined)),
    2
  ),
  lifetime: field(PositiveDur, 120_000)
})

const Fault = Schema.Struct({
  /** Scenario time of the kill. */
  at: Dur,
  /** The node to kill with SIGKILL, numbered from 1 (node-1 … node-N of `--target cluster:N`). */
  kill_node: Count,
  /** Start the killed node again (same configuration and data) this long after the kill; null: it stays down. */
  restart_after: field(Schema.NullOr(PositiveDur), null)
})

const File = Schema.Struct({
  name: Text,
  description: field(Schema.String, ""),
  /** "cluster": the scenario only makes sense against `--target cluster:N`. */
  requires: field(oneOf(["any", "cluster"]), "any"),
  seed: field(Natural, 1),
  /** How long senders send (scenario time); open-loop arrivals are spread over it. */
  duration: field(PositiveDur, 20_000),
  /** Longest wait after the last message was sent for every outcome to arrive. */
  drain: field(PositiveDur, 60_000),
  senders: field(Senders, Schema.decodeUnknownSync(Senders)({})),
  destinations: Schema.Array(Destination).check(
    Schema.makeFilter((ds) => {
      if (ds.length === 0) return "needs at least one destination"
      const seen = new Set<string>()
      const issues: Array<Schema.FilterIssue> = []
      ds.forEach((d, i) => {
        if (seen.has(d.domain)) issues.push({ path: [i, "domain"], issue: `duplicate destination ${d.domain}` })
        seen.add(d.domain)
      })
      if (ds.every((d) => d.weight === 0)) issues.push({ path: [0, "weight"], issue: "at least one destination needs a weight above 0" })
      return issues
    })
  ),
  /** The retry policy given to the embedded node. */
  retry: field(Retry, Schema.decodeUnknownSync(Retry)({})),
  /** Extra node configuration keys for the embedded target (merged over the harness's own; checked by the node). */
  node: field(Schema.Record(Schema.String, Schema.Unknown), {}),
  faults: field(Schema.Array(Fault), [])
}).check(
  Schema.makeFilter((s) => {
    const issues: Array<Schema.FilterIssue> = []
    if (s.senders.loop === "closed" && s.senders.messages === null)
      issues.push({ path: ["senders", "messages"], issue: 'required when senders.loop is "closed"' })
    const dest = new Set(s.destinations.map((d) => d.domain))
    s.senders.domains.forEach((d, i) => {
      if (dest.has(d))
        issues.push({ path: ["senders", "domains", i], issue: `${d} is also a destination; sender domains must be their own` })
    })
    if (s.faults.length > 0 && s.requires !== "cluster") issues.push({ path: ["faults"], issue: "node faults need requires: cluster" })
    return issues
  })
)

export type Scenario = typeof File.Type
export type Destination = Scenario["destinations"][number]
export type Senders = Scenario["senders"]

export type Result = { readonly ok: true; readonly scenario: Scenario } | { readonly ok: false; readonly errors: ReadonlyArray<string> }

const decode = Schema.decodeUnknownResult(File)
const options: SchemaAST.ParseOptions = { errors: "all", onExcessProperty: "error", reportInput: true }

/** Parses and validates scenario text; `source` prefixes each error with "source:line:col: ". */
export const parse = (text: string, source?: string): Result => {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number): string => {
    if (source === undefined) return ""
    if (!Number.isFinite(offset)) return `${source}: `
    const { line, col } = lines.linePos(offset)
    return `${source}:${line}:${col}: `
  }
  if (doc.errors.length > 0) return { ok: false, errors: doc.errors.map((e) => `${at(e.pos[0])}${e.message.split("\n")[0]}`) }
  const result = decode(doc.toJS() ?? {}, options)
  if (EffectResult.isSuccess(result)) return { ok: true, scenario: result.success }
  const located = Problems.fromIssue(result.failure.issue).map((p) => ({ ...p, offset: Problems.offsetOf(doc, p.path) ?? Infinity }))
  located.sort((a, b) => a.offset - b.offset)
  return { ok: false, errors: located.map((p) => `${at(p.offset)}${Problems.formatPath(p.path)}: ${p.message}`) }
}

/** Reads and validates a scenario file. */
export const load = (path: string): Result => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return { ok: false, errors: [`${path}: cannot read scenario (${code === "ENOENT" ? "no such file" : (code ?? String(error))})`] }
  }
  return parse(text, path)
}

/** The directory of the bundled scenarios. */
export const bundledDir = resolve(import.meta.dirname, "../scenarios")

/** Bundled scenarios by name (file name without .yaml), sorted. */
export const bundled = (): ReadonlyArray<{ readonly name: string; readonly path: string }> =>
  readdirSync(bundledDir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => ({ name: f.replace(/\.yaml$/, ""), path: join(bundledDir, f) }))

/** A file path, or the name of a bundled scenario. */
export const locate = (nameOrPath: string): string => {
  const hit = bundled().find((b) => b.name === nameOrPath)
  return hit ? hit.path : nameOrPath
}

export interface Overrides {
  readonly seed?: number | undefined
  /** Multiplies the number of messages (and the rate). */
  readonly scale?: number | undefined
  /** Replaces `duration`; every scenario time (ramp-up, schedules, faults) is stretched or squeezed with it. */
  readonly duration?: number | undefined
}

/** The number of messages a scenario sends. */
export const messageCount = (s: Scenario): number =>
  s.senders.messages ?? Math.max(1, Math.round((s.senders.rate * Math.max(0, s.duration - s.senders.ramp_up / 2)) / 1000))

/** Applies run-time overrides; the result is again a plain, valid scenario. */
export const adjust = (s: Scenario, o: Overrides): Scenario => {
  const f = o.duration !== undefined ? o.duration / s.duration : 1
  const scale = o.scale ?? 1
  const t = (ms: number): number => Math.round(ms * f)
  const count = Math.max(1, Math.round(messageCount(s) * scale))
  return {
    ...s,
    seed: o.seed ?? s.seed,
    duration: t(s.duration),
    senders: { ...s.senders, ramp_up: t(s.senders.ramp_up), rate: (s.senders.rate * scale) / f, messages: count },
    destinations: s.destinations.map((d) => ({ ...d, schedule: d.schedule.map((p) => ({ ...p, from: t(p.from), to: t(p.to) })) })),
    faults: s.faults.map((x) => ({ ...x, at: t(x.at), restart_after: x.restart_after === null ? null : Math.max(1, t(x.restart_after)) }))
  }
}

/** The behaviour of a destination at scenario time `at` (later schedule entries win). */
export const behaviourAt = (d: Destination, at: number): Behaviour =>
  d.schedule.reduce<Behaviour>((b, p) => (at >= p.from && at < p.to ? { ...b, ...p.behaviour } : b), d.behaviour)
