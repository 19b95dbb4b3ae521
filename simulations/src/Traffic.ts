// The traffic of a scenario, decided before anything is sent: for message i, its tag, arrival time (open loop), sender,
// recipients (domains by weight) and size. A pure function of the scenario and its seed, so two runs send the same mail.
// Builds bodies on demand; knows nothing of sockets.
import * as Random from "./Random.js"
import * as Scenario from "./Scenario.js"

export interface Message {
  readonly index: number
  /** Unique in the run; carried in the envelope (VERP sender, recipient local parts) and the X-Sim-Tag header. */
  readonly tag: string
  /** Scenario time the message is due (open loop), ms. */
  readonly at: number
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly size: number
}

export const tagOf = (index: number): string => `m${index.toString(36).padStart(5, "0")}`

/** Time at which the cumulative number of arrivals reaches `n` with a linear ramp to `rate` over `ramp` ms. */
export const arrivalTime = (n: number, ratePerSec: number, rampMs: number): number => {
  const r = ratePerSec / 1000
  const inRamp = (r * rampMs) / 2
  if (n <= inRamp && rampMs > 0) return Math.sqrt((2 * n * rampMs) / r)
  return rampMs + (n - inRamp) / r
}

export const plan = (s: Scenario.Scenario): ReadonlyArray<Message> => {
  const rng = Random.forComponent(s.seed, "traffic")
  const count = Scenario.messageCount(s)
  const domainWeights = s.destinations.map((d) => d.weight)
  const sizeWeights = s.senders.sizes.map((x) => x.weight)
  const out: Array<Message> = []
  for (let i = 0; i < count; i++) {
    const tag = tagOf(i)
    const n = rng.int(s.senders.recipients.min, s.senders.recipients.max)
    const to = Array.from({ length: n }, (_, j) => `r${j}.${tag}@${s.destinations[rng.weighted(domainWeights)]!.domain}`)
    const size = s.senders.sizes[rng.weighted(sizeWeights)]!.size
    const from = `b.${tag}@${s.senders.domains[rng.int(0, s.senders.domains.length - 1)]!}`
    const at = s.senders.loop === "open" ? arrivalTime(i, s.senders.rate, s.senders.ramp_up) : 0
    out.push({ index: i, tag, at, from, to, size })
  }
  return out
}

const LINE = Buffer.from(`${"abcdefghijklmnopqrstuvwxyz0123456789".repeat(2).slice(0, 74)}\r\n`)
let filler = Buffer.alloc(0)

/** The message as sent, in two parts (headers with X-Sim-Tag, and a shared filler body), `size` bytes give or take a line. */
export const parts = (m: Message): [Buffer, Buffer] => {
  const head = Buffer.from(
    [
      `From: <${m.from}>`,
      `To: ${m.to.map((t) => `<${t}>`).join(", ")}`,
      `Subject: simulated message ${m.tag}`,
      `Message-ID: <${m.tag}@sim.missive>`,
      `X-Sim-Tag: ${m.tag}`,
      ``,
      ``
    ].join("\r\n"),
    "latin1"
  )
  const lines = Math.max(1, Math.floor((m.size - head.length) / LINE.length))
  if (filler.length < lines * LINE.length) filler = Buffer.concat(Array.from({ length: lines }, () => LINE))
  return [head, filler.subarray(0, lines * LINE.length)]
}

/** The message as sent, as one buffer. */
export const body = (m: Message): Buffer => Buffer.concat(parts(m))
