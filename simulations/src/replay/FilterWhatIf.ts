// What-if for the filter stage: re-decides each recorded MessageFiltered under another policy (DMARC enforced or only
// recorded, DNS temperror answered 451 or recorded) from the verdicts the log holds — no DNS, no message bodies — and
// reports which messages would have been treated differently. Pure over the recorded events; never writes.
// The re-decision is the stage's own rule (the most severe action wins, core's FilterAction order); it cannot
// re-run a check the node did not run, so a listener that did not verify has no DMARC verdict to re-decide.
import { Message } from "@missive/core"
import type { EventStore } from "@missive/events"

export interface FilterPolicy {
  /** enforce: a failing DMARC verdict takes its domain's policy (reject / quarantine); record: it only records. */
  readonly dmarc?: "enforce" | "record" | undefined
  /** tempfail: a temperror verdict answers 451; record: it is recorded and the message accepted. */
  readonly temperror?: "tempfail" | "record" | undefined
}

type Action = Message.FilterAction
const ORDER: ReadonlyArray<Action> = ["accept", "add-headers", "quarantine", "tempfail", "reject"]
const worse = (a: Action, b: Action): Action => (ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a)

/** The action one verdict asks for under the policy; verdicts the policy does not speak to keep their recorded action. */
export const redecideVerdict = (v: Message.Verdict, p: FilterPolicy): Action => {
  if (v.result === "temperror" && p.temperror !== undefined) return p.temperror === "tempfail" ? "tempfail" : "accept"
  if (v.name === "dmarc" && v.result === "fail" && p.dmarc !== undefined) {
    if (p.dmarc === "record") return "accept"
    const policy = /policy=(reject|quarantine|none)/.exec(v.detail ?? "")?.[1]
    return policy === "reject" ? "reject" : policy === "quarantine" ? "quarantine" : "accept"
  }
  return v.action
}

export const redecide = (e: Message.FilterOutcome, p: FilterPolicy): Action =>
  e.verdicts.reduce<Action>((a, v) => worse(a, redecideVerdict(v, p)), "accept")

export interface Change {
  readonly id: string
  readonly at: number
  readonly recorded: Action
  readonly alternative: Action
  /** The verdicts whose action changed, "name=result". */
  readonly because: ReadonlyArray<string>
}

export interface Result {
  readonly messages: number
  readonly recorded: Readonly<Record<Action, number>>
  readonly alternative: Readonly<Record<Action, number>>
  readonly changes: ReadonlyArray<Change>
}

const zero = (): Record<Action, number> => ({ accept: 0, "add-headers": 0, quarantine: 0, tempfail: 0, reject: 0 })

/** Folds recorded MessageFiltered events (in [from, to]) through the alternative policy. */
export const compare = (events: Iterable<Message.Event>, p: FilterPolicy, window: { from: number; to: number }): Result => {
  const recorded = zero()
  const alternative = zero()
  const changes: Array<Change> = []
  let messages = 0
  for (const e of events) {
    if (e.type !== "MessageFiltered" || e.at < window.from || e.at > window.to) continue
    messages += 1
    const alt = redecide(e, p)
    recorded[e.action] += 1
    alternative[alt] += 1
    if (alt !== e.action)
      changes.push({
        id: e.id,
        at: e.at,
        recorded: e.action,
        alternative: alt,
        because: e.verdicts.filter((v) => redecideVerdict(v, p) !== v.action).map((v) => `${v.name}=${v.result}`)
      })
  }
  return { messages, recorded, alternative, changes }
}

/** Reads the whole log in pages and compares. */
export const run = async (store: EventStore.EventStore, p: FilterPolicy, window: { from: number; to: number }): Promise<Result> => {
  const all: Array<Message.Event> = []
  for (let after = 0; ;) {
    const page = await store.readAll(after, 10_000)
    if (page.length === 0) break
    for (const s of page) if (s.event.type === "MessageFiltered") all.push(s.event)
    after = page[page.length - 1]!.position
  }
  return compare(all, p, window)
}

export const format = (r: Result, p: FilterPolicy): string => {
  const line = (c: Record<Action, number>) => ORDER.map((a) => `${a} ${c[a]}`).join(", ")
  const out = [
    `filter what-if (${Object.entries(p)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ")}) over ${r.messages} filtered message(s)`,
    `  recorded:    ${line(r.recorded)}`,
    `  alternative: ${line(r.alternative)}`,
    `  ${r.changes.length} message(s) would be treated differently${r.changes.length ? ":" : ""}`
  ]
  for (const c of r.changes.slice(0, 200))
    out.push(`    ${c.id}  ${new Date(c.at).toISOString()}  ${c.recorded} -> ${c.alternative}  (${c.because.join(" ")})`)
  if (r.changes.length > 200) out.push(`    … and ${r.changes.length - 200} more (--json lists them all)`)
  return out.join("\n")
}
