// MTA-STS (RFC 8461): discovers a recipient domain's policy (TXT _mta-sts.<domain>), fetches it over HTTPS from
// mta-sts.<domain>, caches it for its max_age (persisted in the data directory, so a restart keeps it), and says
// which MX hosts the policy allows. Must not connect to MX hosts or decide retries: delivery applies what it says.
// Security stance: the policy host's certificate must verify (system roots, plus the configured CA file); no
// redirects are followed, bodies over 64 KiB are refused, and an unreadable or invalid policy counts as none
// (a previously cached, unexpired policy stays in force, as §5.1 asks, so an attacker cannot strip it by blocking).
import { readFileSync, renameSync, writeFileSync } from "node:fs"
import { request } from "node:https"
import { join } from "node:path"
import { rootCertificates } from "node:tls"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"

export type StsMode = "enforce" | "testing" | "none"

export interface StsPolicy {
  readonly mode: StsMode
  /** MX patterns: "mx.example.com" or "*.example.com" (one leftmost label). */
  readonly mx: ReadonlyArray<string>
  /** Seconds. */
  readonly maxAge: number
}

/** RFC 8461 §3.2: max_age is at most 31557600 s (one year). */
const MAX_AGE_CAP = 31_557_600
const MAX_BODY = 64 * 1024
/** How long a discovery's result is reused before the TXT record is asked again (§5.1 allows checking less often). */
const RECHECK_MS = 60_000

/** Parses a policy body; undefined when it is not a valid STSv1 policy. */
export const parsePolicy = (text: string): StsPolicy | undefined => {
  const fields = new Map<string, string[]>()
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === "") continue
    const i = line.indexOf(":")
    if (i <= 0) return undefined
    const key = line.slice(0, i).trim().toLowerCase()
    const value = line.slice(i + 1).trim()
    fields.set(key, [...(fields.get(key) ?? []), value])
  }
  if (fields.get("version")?.[0] !== "STSv1") return undefined
  const mode = fields.get("mode")?.[0]
  if (mode !== "enforce" && mode !== "testing" && mode !== "none") return undefined
  const age = Number(fields.get("max_age")?.[0])
  if (!Number.isSafeInteger(age) || age < 0) return undefined
  const mx = (fields.get("mx") ?? []).map((m) => m.toLowerCase().replace(/\.$/, ""))
  if (mode !== "none" && mx.length === 0) return undefined
  return { mode, mx, maxAge: Math.min(age, MAX_AGE_CAP) }
}

/** RFC 8461 §4.1: a pattern matches the MX host name exactly, or "*.example.com" matches exactly one more label. */
export const mxMatches = (patterns: ReadonlyArray<string>, host: string): boolean => {
  const name = host.toLowerCase().replace(/\.$/, "")
  return patterns.some((p) => {
    if (!p.startsWith("*.")) return p === name
    const suffix = p.slice(1)
    return name.endsWith(suffix) && !name.slice(0, -suffix.length).includes(".") && name.length > suffix.length
  })
}

/** The TXT record: "v=STSv1; id=..." (§3.1); undefined when it is not one. */
export const parseTxt = (txt: string): string | undefined => {
  const parts = txt.split(";").map((p) => p.trim())
  if (parts[0] !== "v=STSv1") return undefined
  const id = parts.find((p) => p.startsWith("id="))?.slice(3)
  return id && /^[A-Za-z0-9]{1,32}$/.test(id) ? id : undefined
}

export interface Cached {
  readonly id: string
  readonly policy: StsPolicy
  readonly fetchedAt: number
}

export interface MtaStsOptions {
  /** TXT lookup (every record's strings joined); rcode "NOERROR" with records, or the failure. */
  readonly txt: (name: string) => Promise<{ readonly records: ReadonlyArray<string>; readonly rcode: string }>
  /** Where the cache is persisted ("<data_dir>/mta-sts.json"); undefined keeps it in memory only. */
  readonly dataDir?: string | undefined
  /** PEM CA certificates trusted besides the system roots. */
  readonly extraCa?: ReadonlyArray<string> | undefined
  /** Policy host → address to connect to instead of resolving it (tests: a loopback HTTPS server). */
  readonly hosts?: Readonly<Record<string, { readonly host: string; readonly port: number }>> | undefined
  readonly timeoutMs?: number | undefined
  readonly clock: Clock
  readonly log: Logger
}

export interface MtaSts {
  /** The policy in force for `domain` (mode enforce or testing), or undefined for none. Never rejects. */
  policyFor(domain: string): Promise<StsPolicy | undefined>
  /** The cache as it stands (for tests and operators). */
  cached(domain: string): Cached | undefined
}

export const make = (options: MtaStsOptions): MtaSts => {
  const file = options.dataDir ? join(options.dataDir, "mta-sts.json") : undefined
  const cache = new Map<string, Cached>()
  if (file) {
    try {
      const saved = JSON.parse(readFileSync(file, "utf8")) as Record<string, Cached>
      for (const [d, c] of Object.entries(saved)) cache.set(d, c)
    } catch {
      // no cache yet (or an unreadable one): policies are fetched again
    }
  }
  const persist = (): void => {
    if (!file) return
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(Object.fromEntries(cache)), { mode: 0o600 })
      renameSync(`${file}.tmp`, file)
    } catch (e) {
      options.log("warn", "mta-sts cache not saved", { error: String((e as Error)?.message ?? e) })
    }
  }
  const ca = options.extraCa && options.extraCa.length > 0 ? [...rootCertificates, ...options.extraCa] : undefined
  const inflight = new Map<string, Promise<StsPolicy | undefined>>()

  /** GET https://mta-sts.<domain>/.well-known/mta-sts.txt: the body of a 200 text/plain answer, or why not. */
  const fetchPolicy = (domain: string): Promise<string | { error: string }> => {
    const host = `mta-sts.${domain}`
    const to = options.hosts?.[host]
    return new Promise((resolve) => {
      const req = request(
        {
          host: to?.host ?? host,
          port: to?.port ?? 443,
          servername: host,
          path: "/.well-known/mta-sts.txt",
          method: "GET",
          headers: { host, "user-agent": "missive" },
          ...(ca ? { ca } : {}),
          rejectUnauthorized: true,
          timeout: options.timeoutMs ?? 10_000,
          agent: false
        },
        (res) => {
          const type = String(res.headers["content-type"] ?? "")
          if (res.statusCode !== 200) {
            res.resume()
            return resolve({ error: `HTTP ${res.statusCode}` })
          }
          if (!/^text\/plain\b/i.test(type)) {
            res.resume()
            return resolve({ error: `content type ${type || "none"}` })
          }
          const chunks: Buffer[] = []
          let size = 0
          res.on("data", (c: Buffer) => {
            size += c.length
            if (size > MAX_BODY) req.destroy(new Error("policy larger than 64 KiB"))
            else chunks.push(c)
          })
          res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
          res.on("error", (e) => resolve({ error: e.message }))
        }
      )
      req.on("timeout", () => req.destroy(new Error("timed out")))
      req.on("error", (e) => resolve({ error: (e as { code?: string }).code ?? e.message }))
      req.end()
    })
  }

  const live = (c: Cached | undefined, now: number): c is Cached => c !== undefined && c.fetchedAt + c.policy.maxAge * 1000 > now
  /** What discovery found lately, per domain: the TXT record is looked up again after RECHECK_MS, not per message. */
  const recent = new Map<string, { readonly at: number; readonly policy: StsPolicy | undefined }>()

  const discover = async (domain: string): Promise<StsPolicy | undefined> => {
    const now = options.clock.now()
    const cached = cache.get(domain)
    const txt = await options.txt(`_mta-sts.${domain}`)
    const ids = txt.records.map(parseTxt).filter((x): x is string => x !== undefined)
    // §3.1: more than one STSv1 record, or none, is no (new) policy; a cached live policy stays in force (§5.1)
    const id = ids.length === 1 ? ids[0] : undefined
    if (id === undefined) return live(cached, now) ? cached.policy : undefined
    if (live(cached, now) && cached.id === id) return cached.policy
    const body = await fetchPolicy(domain)
    const policy = typeof body === "string" ? parsePolicy(body) : undefined
    if (!policy) {
      options.log("warn", "mta-sts policy not fetched", {
        domain,
        error: typeof body === "string" ? "invalid policy" : body.error,
        cached: live(cached, now)
      })
      return live(cached, now) ? cached.policy : undefined
    }
    cache.set(domain, { id, policy, fetchedAt: now })
    persist()
    options.log("info", "mta-sts policy fetched", { domain, id, mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge })
    return policy
  }

  return {
    policyFor: async (domain) => {
      const d = domain.toLowerCase()
      const seen = recent.get(d)
      const now = options.clock.now()
      if (seen && now - seen.at < RECHECK_MS && (seen.policy === undefined || live(cache.get(d), now)))
        return seen.policy && seen.policy.mode !== "none" ? seen.policy : undefined
      let p = inflight.get(d)
      if (!p) {
        p = discover(d)
          .then((policy) => {
            recent.set(d, { at: now, policy })
            return policy
          })
          .catch((e: unknown) => {
            options.log("warn", "mta-sts discovery failed", { domain: d, error: String((e as Error)?.message ?? e) })
            return undefined
          })
          .finally(() => inflight.delete(d))
        inflight.set(d, p)
      }
      const policy = await p
      return policy && policy.mode !== "none" ? policy : undefined
    },
    cached: (domain) => cache.get(domain.toLowerCase())
  }
}
