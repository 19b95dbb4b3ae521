// `missive sim run|list|check`: load tests against simulated senders, receivers and DNS (package @missive/simulations).
// Parses arguments and prints; the runs, reports and targets are the simulations package's.
// Exit codes: 0 run passed (nothing lost), 1 a run lost mail or a check found problems, 2 bad usage or unavailable target.
import { Duration } from "@missive/node"
import { Html, Report, Run, Scenario, Target } from "@missive/simulations"
import { parseFlags } from "./Help.js"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"

export { SIM_HELP as HELP } from "./Help.js"

const usage = (text: string): number => {
  process.stderr.write(`missive: ${text}\nRun "missive help" for usage.\n`)
  return 2
}

const formatProgress = (p: {
  at: number
  phase: string
  total: number
  sent: number
  accepted: number
  delivered: number
  deferred: number
  bounced: number
  queued: number
  rate: number
}): string =>
  `${(p.at / 1000).toFixed(1)}s ${p.phase}: sent ${p.sent}/${p.total} accepted ${p.accepted} delivered ${p.delivered} deferred ${p.deferred} bounced ${p.bounced} in flight ${p.queued} ${p.rate.toFixed(1)} msgs/s`

export const sim = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [sub, ...rest] = argv
  if (sub === "list") {
    if (rest.length > 0) return usage("usage: missive sim list")
    for (const b of Scenario.bundled()) {
      const r = Scenario.load(b.path)
      const about = r.ok
        ? `${r.scenario.requires === "cluster" ? "[needs --target cluster:N] " : ""}${r.scenario.description}`
        : "(invalid: run missive sim check)"
      process.stdout.write(`${b.name.padEnd(18)} ${about}\n`)
    }
    return 0
  }
  if (sub === "check") {
    const [file, ...more] = rest
    if (!file || more.length > 0) return usage("usage: missive sim check FILE")
    const r = Scenario.load(Scenario.locate(file))
    if (r.ok) {
      process.stdout.write(`${file}: OK\n`)
      return 0
    }
    process.stderr.write(`${r.errors.join("\n")}\n`)
    return 1
  }
  if (sub !== "run") return usage("usage: missive sim run|list|check …")
  const a = parseFlags(rest, {
    target: "value",
    seed: "value",
    scale: "value",
    duration: "value",
    report: "value",
    json: "bool",
    log: "value"
  })
  if (typeof a === "string") return usage(a)
  const [file, ...more] = a.positional
  if (!file || more.length > 0) return usage("usage: missive sim run SCENARIO [--target …] [--seed N]")
  const spec = Target.parseSpec(String(a.flags.get("target") ?? "embedded"))
  if (typeof spec === "string") return usage(spec)
  const num = (name: string, ok: (n: number) => boolean): number | undefined | string => {
    const v = a.flags.get(name)
    if (v === undefined) return undefined
    const n = Number(v)
    return Number.isFinite(n) && ok(n) ? n : `option --${name}: bad value ${JSON.stringify(v)}`
  }
  const seed = num("seed", (n) => Number.isSafeInteger(n) && n >= 0)
  const scale = num("scale", (n) => n > 0)
  if (typeof seed === "string") return usage(seed)
  if (typeof scale === "string") return usage(scale)
  const parseDuration = Duration.parse
  const durationText = a.flags.get("duration")
  const duration = durationText === undefined ? undefined : parseDuration(String(durationText))
  if (durationText !== undefined && (duration === undefined || duration <= 0))
    return usage(`option --duration: expected a duration such as "30s", got ${JSON.stringify(durationText)}`)
  const loaded = Scenario.load(Scenario.locate(file))
  if (!loaded.ok) {
    process.stderr.write(`missive: invalid scenario:\n${loaded.errors.map((e) => `  ${e}`).join("\n")}\n`)
    return 2
  }
  const scenario = Scenario.adjust(loaded.scenario, { seed, scale, duration })
  const tty = process.stderr.isTTY === true
  let bar: { update(n: number, p: object): void; stop(): void; start(total: number, n: number, p: object): void } | undefined
  let lastLine = 0
  if (tty) {
    const { default: cliProgress } = await import("cli-progress")
    bar = new cliProgress.SingleBar(
      {
        format:
          "{bar} {value}/{total} sent | accepted {accepted} | delivered {delivered} | deferred {deferred} | bounced {bounced} | in flight {queued} | {rate} msgs/s | {phase}",
        hideCursor: true,
        clearOnComplete: false,
        stream: process.stderr
      },
      cliProgress.Presets.shades_classic
    )
  }
  const onProgress = (p: Parameters<typeof formatProgress>[0]): void => {
    if (bar) {
      if (lastLine === 0) bar.start(p.total, 0, {})
      lastLine = 1
      bar.update(p.sent, { ...p, rate: p.rate.toFixed(1) })
    } else if (p.at - lastLine >= 2000) {
      lastLine = p.at
      process.stderr.write(`sim: ${formatProgress(p)}\n`)
    }
  }
  let report
  try {
    report = await Run.run({
      scenario,
      target: spec,
      onProgress,
      logFile: typeof a.flags.get("log") === "string" ? resolve(String(a.flags.get("log"))) : undefined
    })
  } catch (e) {
    bar?.stop()
    if (e instanceof Target.TargetError) {
      process.stderr.write(`missive: ${e.message}\n`)
      return 2
    }
    throw e
  }
  bar?.stop()
  const out = resolve(String(a.flags.get("report") ?? `sim-reports/${scenario.name}-seed${scenario.seed}.html`))
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, Html.render(report))
  process.stdout.write(
    a.flags.has("json")
      ? `${JSON.stringify({ ...report, samples: undefined }, null, 2)}\n`
      : `${Report.formatText(report)}\nreport: ${out}\n`
  )
  return report.counts.lost === 0 ? 0 : 1
}
