// Sender authentication (inbound) with mailauth: SPF at MAIL, DKIM and ARC verification and DMARC at the end of DATA,
// an Authentication-Results: header (RFC 8601) naming this host, and the listener's policy (enforce DMARC's p=reject
// and p=quarantine, or only record; a temporary DNS failure gives 451 or records temperror). Every DNS answer it used
// is kept as the verdict's evidence. Must not sign (Sign.ts) nor look anything up outside the configured resolvers.
// Security: an Authentication-Results: header from outside that claims this host is removed before anything reads it;
// mail from authenticated or trusted clients is not checked (it is ours to sign, not to judge).
import { Resolver } from "node:dns/promises"
import { arc, dkimVerify, dmarc, spf, type DKIMVerifyResult, type SPFResult } from "mailauth"
import type { Config } from "../config/Config.js"
import { rcodeOf } from "../router/Resolver.js"
import type { DataContext, Filter, MailContext, StageResult, Verdict } from "./Filter.js"
import * as Headers from "./internal/Headers.js"

type Policy = Config["filter"]["auth"]["smtp"]
type Evidence = NonNullable<Verdict["evidence"]>[number]

export const Replies = {
  dmarcReject: (domain: string) => ({ code: 550, enhanced: "5.7.1", text: `Message rejected: DMARC policy of ${domain}` }),
  temperror: { code: 451, enhanced: "4.4.3", text: "Temporary DNS failure checking the sender, try again later" }
} as const

/** Most lookups one message may record as evidence (SPF alone may make 10 plus void lookups). */
const MAX_EVIDENCE = 40

export interface AuthOptions {
  readonly hostname: string
  readonly servers: ReadonlyArray<string>
  readonly timeoutMs: number
  readonly policies: Readonly<Record<"smtp" | "submission", Policy>>
  /** The node's clock: the answer cache's ages. */
  readonly now: () => number
}

/** How long an answer (or NXDOMAIN/NODATA) is reused across messages; temporary failures are never kept. */
const CACHE_MS = 60_000
const CACHE_MAX = 10_000

type Cached = { readonly at: number; readonly answers?: unknown; readonly error?: unknown }

/**
 * The node's resolver with a small answer cache: a relay sees the same SPF and DMARC records message after message.
 * node:dns gives no TTL for TXT, so answers are kept a fixed minute; a full cache is emptied, not evicted piecemeal.
 */
const cachedResolver = (resolver: Resolver, now: () => number) => {
  const cache = new Map<string, Cached>()
  return async (name: string, rrtype: string): Promise<unknown> => {
    const key = `${rrtype} ${name.toLowerCase()}`
    const hit = cache.get(key)
    if (hit && now() - hit.at < CACHE_MS) {
      if ("error" in hit) throw hit.error
      return hit.answers
    }
    if (cache.size >= CACHE_MAX) cache.clear()
    try {
      const answers = await resolver.resolve(name, rrtype)
      cache.set(key, { at: now(), answers })
      return answers
    } catch (e) {
      const rcode = rcodeOf(e)
      if (rcode === "NXDOMAIN" || rcode === "NODATA") cache.set(key, { at: now(), error: e })
      throw e
    }
  }
}

type Resolve = (name: string, rrtype: string) => Promise<never>

/** A resolver for mailauth (dns.promises.resolve's shape) through the node's servers, recording each answer. */
const recording = (resolve: (name: string, rrtype: string) => Promise<unknown>, into: Array<Evidence>): Resolve =>
  (async (name: string, rrtype: string) => {
    try {
      const answers = await resolve(name, rrtype)
      if (into.length < MAX_EVIDENCE)
        into.push({ name, type: rrtype, rcode: "NOERROR", answers: (answers as Array<unknown>).map(answerText) })
      return answers
    } catch (e) {
      if (into.length < MAX_EVIDENCE) into.push({ name, type: rrtype, rcode: rcodeOf(e), answers: [] })
      throw e
    }
  }) as Resolve

const answerText = (a: unknown): string =>
  Array.isArray(a) ? a.join("") : typeof a === "object" && a !== null ? JSON.stringify(a) : String(a)

const isTemp = (result: string): boolean => result === "temperror" || result === "temperr"

/** SPF results the MAIL stage found, by verdict: the DATA stage reads them back for DMARC. */
const spfOf = new WeakMap<Verdict, SPFResult>()

export const make = (o: AuthOptions): Filter => {
  const resolver = new Resolver({ timeout: o.timeoutMs, tries: 1 })
  if (o.servers.length > 0) resolver.setServers([...o.servers])
  const resolve = cachedResolver(resolver, o.now)
  const policyOf = (c: { session: DataContext["session"] }): Policy | undefined => {
    const p = o.policies[c.session.listener]
    return p.verify && c.session.user === undefined && !c.session.trusted ? p : undefined
  }
  const tempAction = (p: Policy): Pick<Verdict, "action" | "reply"> =>
    p.temperror === "tempfail" ? { action: "tempfail", reply: Replies.temperror } : { action: "accept" }

  const mail = async (c: MailContext): Promise<StageResult> => {
    const p = policyOf(c)
    if (!p) return { verdicts: [] }
    const evidence: Array<Evidence> = []
    const r = await spf({
      sender: c.sender,
      ip: c.session.ip,
      helo: c.session.helo,
      mta: o.hostname,
      resolver: recording(resolve, evidence),
      maxElapsedTime: o.timeoutMs * 4
    })
    const result = r.status.result
    const v: Verdict = {
      name: "spf",
      stage: "mail",
      result: isTemp(result) ? "temperror" : result,
      ...(isTemp(result) ? tempAction(p) : { action: "accept" }),
      detail: r.info,
      evidence
    }
    spfOf.set(v, r)
    return { verdicts: [v] }
  }

  const data = async (c: DataContext): Promise<StageResult> => {
    // Removed whatever the listener's policy: a claim of this host's results from outside is never passed on.
    const message = Headers.remove(c.message, (name, value) => name === "authentication-results" && claims(value, o.hostname))
    const p = policyOf(c)
    if (!p) return message === c.message ? { verdicts: [] } : { verdicts: [], message }
    const spfVerdict = c.verdicts.find((v) => v.name === "spf" && spfOf.has(v))
    const spfResult = spfVerdict ? spfOf.get(spfVerdict) : undefined
    const verdicts: Array<Verdict> = []

    const dkimEvidence: Array<Evidence> = []
    const dkim: DKIMVerifyResult = await dkimVerify(message, {
      resolver: recording(resolve, dkimEvidence),
      sender: c.sender || undefined,
      minBitLength: 1024
    } as never)
    const results = dkim.results ?? []
    const dkimWord = results.some((r) => r.status.result === "pass")
      ? "pass"
      : results.some((r) => isTemp(r.status.result))
        ? "temperror"
        : results.length === 0
          ? "none"
          : (results[0]?.status.result ?? "none")
    verdicts.push({
      name: "dkim",
      stage: "data",
      result: dkimWord,
      ...(dkimWord === "temperror" ? tempAction(p) : { action: "accept" }),
      detail: results.map((r) => r.info).join("; ") || "no signature",
      evidence: dkimEvidence
    })

    const arcEvidence: Array<Evidence> = []
    const arcResult = await arc((dkim as unknown as { arc: never }).arc, {
      resolver: recording(resolve, arcEvidence),
      ip: c.session.ip
    } as never)
    verdicts.push({
      name: "arc",
      stage: "data",
      result: arcResult.status.result,
      action: "accept",
      detail: arcResult.info,
      evidence: arcEvidence
    })

    const dmarcEvidence: Array<Evidence> = []
    const dm =
      dkim.headerFrom && dkim.headerFrom.length > 0
        ? await dmarc({
            headerFrom: dkim.headerFrom,
            fromFields: dkim.fromFields,
            spfDomains: spfResult && spfResult.status.result === "pass" ? [spfResult.domain] : [],
            dkimDomains: results
              .filter((r) => r.status.result === "pass")
              .map((r) => ({ id: r.id, domain: r.signingDomain ?? "", aligned: r.status.aligned, underSized: r.status.underSized })),
            arcResult,
            resolver: recording(resolve, dmarcEvidence)
          } as never)
        : false
    if (dm) {
      const result = dm.status.result
      const enforce = p.dmarc === "enforce" && result === "fail"
      const action: Verdict["action"] = isTemp(result)
        ? tempAction(p).action
        : enforce && dm.policy === "reject"
          ? "reject"
          : enforce && dm.policy === "quarantine"
            ? "quarantine"
            : "accept"
      verdicts.push({
        name: "dmarc",
        stage: "data",
        result: isTemp(result) ? "temperror" : result,
        action,
        ...(action === "reject" ? { reply: Replies.dmarcReject(dm.domain) } : action === "tempfail" ? { reply: Replies.temperror } : {}),
        detail: `${dm.info} policy=${dm.policy}${dm.testMode ? " (t=y)" : ""}`,
        evidence: dmarcEvidence
      })
    } else {
      verdicts.push({
        name: "dmarc",
        stage: "data",
        result: "none",
        action: "accept",
        detail: "no single author domain",
        evidence: dmarcEvidence
      })
    }

    const rows = [...results.map((r) => r.info), spfResult?.info, arcResult.info, dm ? dm.info : undefined].filter(
      (x): x is string => typeof x === "string" && x !== ""
    )
    const header = `Authentication-Results: ${o.hostname};\r\n ${rows.length > 0 ? rows.join(";\r\n ") : "none"}\r\n`
    const received = spfResult?.header ? `${spfResult.header.replace(/\r?\n?$/, "")}\r\n` : ""
    return { verdicts, message: Buffer.concat([Buffer.from(header + received, "utf8"), message]) }
  }

  return { name: "auth", mail, data }
}

/** Whether an Authentication-Results value names `hostname` as its authserv-id (RFC 8601 2.2, comments and version aside). */
export const claims = (value: string, hostname: string): boolean => {
  const id = value
    .replace(/\([^)]*\)/g, " ")
    .trim()
    .split(/[\s;]+/)[0]
  return id !== undefined && id.toLowerCase().replace(/\.$/, "") === hostname.toLowerCase().replace(/\.$/, "")
}

export const fromConfig = (config: Config, now: () => number): Filter | undefined =>
  config.filter.auth.smtp.verify || config.filter.auth.submission.verify
    ? make({ hostname: config.hostname, servers: config.dns.servers, timeoutMs: config.dns.timeout, policies: config.filter.auth, now })
    : undefined
