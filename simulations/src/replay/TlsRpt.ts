// `missive replay tls-rpt`: the daily aggregate TLS report of RFC 8460 (SMTP TLS Reporting), built from the attempt
// events of one UTC day: per recipient domain and policy (sts for MTA-STS, tlsa for DANE, no-policy-found otherwise),
// the sessions that succeeded and those that failed, with each failure's result type, MX host and address. Reads the
// log through the EventStore port only; it sends nothing (delivering the report to the domain's rua is not done).
import { Route, type Message, type Trace } from "@missive/core"
import * as Log from "./Log.js"
import { iso } from "./Time.js"

/** RFC 8460 §4.3 result types this report can tell from a recorded trace. */
export type ResultType =
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  | "dnssec-invalid"

export interface FailureDetail {
  readonly "result-type": ResultType
  readonly "receiving-mx-hostname"?: string
  readonly "receiving-ip"?: string
  readonly "failed-session-count": number
  readonly "failure-reason-code"?: string
}

export interface PolicyReport {
  readonly policy: {
    readonly "policy-type": "sts" | "tlsa" | "no-policy-found"
    readonly "policy-domain": string
    readonly "mx-host"?: ReadonlyArray<string>
  }
  readonly summary: { readonly "total-successful-session-count": number; readonly "total-failure-session-count": number }
  readonly "failure-details": ReadonlyArray<FailureDetail>
}

export interface TlsReport {
  readonly "organization-name": string
  readonly "date-range": { readonly "start-datetime": string; readonly "end-datetime": string }
  readonly "contact-info": string
  readonly "report-id": string
  readonly policies: ReadonlyArray<PolicyReport>
}

export interface Options {
  /** The UTC day, "YYYY-MM-DD". */
  readonly day: string
  readonly organization: string
  readonly contact: string
  readonly onProgress?: ((position: number, target: number) => void) | undefined
}

/** What a failed hop's detail says, in RFC 8460's words; undefined when it is not a TLS failure. */
export const resultTypeOf = (h: Trace.HopTried, tls: Trace.TlsOutcome | undefined): ResultType | undefined => {
  const why = `${h.detail ?? ""} ${tls?.reason ?? ""}`
  if (h.outcome === "policy-excluded") return /TLSA lookup failed/.test(why) ? "dnssec-invalid" : "validation-failure"
  if (h.outcome !== "tls-failed") return undefined
  if (/ALTNAME|host ?name|does not match/i.test(why)) return "certificate-host-mismatch"
  if (/EXPIRED/i.test(why)) return "certificate-expired"
  if (/SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|UNTRUSTED|not trusted/i.test(why)) return "certificate-not-trusted"
  if (/TLS not negotiated|STARTTLS/i.test(why)) return "starttls-not-supported"
  return "validation-failure"
}

/** The policy of an attempt: its session's, or (no session: every hop excluded) the one its exclusions name. */
const policyTypeOf = (t: Trace.Trace): PolicyReport["policy"]["policy-type"] => {
  if (t.tls?.policy === "mta-sts") return "sts"
  if (t.tls?.policy === "dane") return "tlsa"
  const why = t.hops.map((h) => h.detail ?? "").join(" ")
  return t.tls === undefined && /TLSA/.test(why) ? "tlsa" : t.tls === undefined && /MTA-STS/.test(why) ? "sts" : "no-policy-found"
}

const hostOf = (hop: string): string => hop.replace(/^\[(.*)\]:\d+$/, "$1").replace(/:\d+$/, "")

type AttemptEvent = Message.EventOf<"AttemptSucceeded"> | Message.EventOf<"AttemptFailed"> | Message.EventOf<"AttemptDeferred">

const isAttempt = (e: Message.Event): e is AttemptEvent =>
  e.type === "AttemptSucceeded" || e.type === "AttemptFailed" || e.type === "AttemptDeferred"

export const build = async (store: Log.Store, o: Options): Promise<TlsReport> => {
  const start = Date.parse(`${o.day}T00:00:00.000Z`)
  if (!Number.isFinite(start)) throw new Error(`not a day: ${o.day} (expected YYYY-MM-DD)`)
  const end = start + 86_400_000
  const head = await store.head()
  const from = await Log.positionAt(store, start - Log.SLACK_MS, head)
  const policies = new Map<
    string,
    {
      type: PolicyReport["policy"]["policy-type"]
      domain: string
      mx: Set<string>
      ok: number
      failed: number
      details: Map<string, FailureDetail>
    }
  >()
  // one attempt's events share their trace (one per distinct reply): count each attempt once
  const seen = new Set<string>()
  for await (const batch of Log.scan(store, { after: from - 1, until: head, onProgress: o.onProgress })) {
    for (const { stream, event: e } of batch) {
      if (!isAttempt(e) || e.at < start || e.at >= end || !e.trace) continue
      const key = `${stream}|${e.attempt}`
      if (seen.has(key)) continue
      seen.add(key)
      const domain = Route.domainOf(e.rcpts[0] ?? "")
      const type = policyTypeOf(e.trace)
      const k = `${type}|${domain}`
      let p = policies.get(k)
      if (!p) policies.set(k, (p = { type, domain, mx: new Set(), ok: 0, failed: 0, details: new Map() }))
      for (const h of e.trace.hops) {
        if (h.name) p.mx.add(h.name)
        const result = resultTypeOf(h, e.trace.tls)
        if (!result) continue
        p.failed++
        const dk = `${result}|${h.name ?? ""}|${h.hop}`
        const d = p.details.get(dk)
        p.details.set(dk, {
          "result-type": result,
          ...(h.name ? { "receiving-mx-hostname": h.name } : {}),
          "receiving-ip": hostOf(h.hop),
          "failed-session-count": (d?.["failed-session-count"] ?? 0) + 1,
          ...(h.detail ? { "failure-reason-code": h.detail } : {})
        })
      }
      const last = e.trace.hops[e.trace.hops.length - 1]
      if (last && (last.outcome === "connected" || last.outcome === "reused") && e.trace.tls?.tls) p.ok++
    }
  }
  return {
    "organization-name": o.organization,
    "date-range": { "start-datetime": iso(start), "end-datetime": iso(end - 1000) },
    "contact-info": o.contact,
    "report-id": `${o.day}_${o.organization}`,
    policies: [...policies.values()]
      .sort((a, b) => a.domain.localeCompare(b.domain) || a.type.localeCompare(b.type))
      .map((p) => ({
        policy: { "policy-type": p.type, "policy-domain": p.domain, ...(p.mx.size > 0 ? { "mx-host": [...p.mx].sort() } : {}) },
        summary: { "total-successful-session-count": p.ok, "total-failure-session-count": p.failed },
        "failure-details": [...p.details.values()]
      }))
  }
}
