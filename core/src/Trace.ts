// What one delivery attempt went through on the way to its reply: every hop tried with its connect outcome, and the
// TLS of the session that answered (or of the last one refused) with the policy that asked for it. Pure data,
// recorded on the attempt's events so replay shows the whole story; it decides nothing.

/** Closed vocabulary of what happened when a hop was tried. */
export type HopOutcome =
  /** A session was opened (greeting, EHLO, STARTTLS as asked): this hop carried the transaction. */
  | "connected"
  /** A pooled session to this hop, opened by an earlier attempt, carried the transaction. */
  | "reused"
  /** TCP connect or greeting failed (refused, reset, timed out, 4xx/5xx greeting). */
  | "connect-failed"
  /** STARTTLS failed, or the certificate did not satisfy the TLS policy in force. */
  | "tls-failed"
  /** The TLS policy excluded this hop before any connection (an MX host outside an MTA-STS policy). */
  | "policy-excluded"

export interface HopTried {
  /** "host:port" as dialled ("[v6]:port" for IPv6). */
  readonly hop: string
  /** The MX host name the address belongs to, when routing knew it. */
  readonly name?: string | undefined
  readonly outcome: HopOutcome
  /** Why it failed, verbatim from the network layer. */
  readonly detail?: string | undefined
}

/** Where the TLS requirements of an attempt came from. */
export type TlsPolicySource = "none" | "opportunistic" | "required" | "mta-sts" | "dane"

export interface TlsOutcome {
  readonly policy: TlsPolicySource
  /** MTA-STS "enforce" | "testing"; DANE "dane-only" | "may". */
  readonly mode?: string | undefined
  /** Whether the session ran under TLS. */
  readonly tls: boolean
  /** "TLSv1.3", ... */
  readonly version?: string | undefined
  readonly cipher?: string | undefined
  /** Whether the peer's certificate was verified (chain and name, or a DANE TLSA match). */
  readonly verified: boolean
  /** Why it was not verified ("DEPTH_ZERO_SELF_SIGNED_CERT", "ERR_TLS_CERT_ALTNAME_INVALID", "no TLSA match", ...). */
  readonly reason?: string | undefined
}

export interface Trace {
  /** Every hop tried, in order; the last one is the one that answered when the attempt got a remote reply. */
  readonly hops: ReadonlyArray<HopTried>
  /** TLS of the session that carried the transaction, or of the last hop whose TLS failed. */
  readonly tls?: TlsOutcome | undefined
}

const showTls = (t: TlsOutcome): string => {
  const policy = t.mode ? `${t.policy} ${t.mode}` : t.policy
  if (!t.tls) return `no TLS (policy ${policy}${t.reason ? `: ${t.reason}` : ""})`
  const verified = t.verified ? "verified" : `not verified${t.reason ? `: ${t.reason}` : ""}`
  return `${t.version ?? "TLS"} ${t.cipher ?? ""}`.trim() + `, certificate ${verified} (policy ${policy})`
}

/** One line for a timeline: hops with their outcomes, then the TLS. */
export const format = (t: Trace): string => {
  const hops = t.hops.map((h) => `${h.name ? `${h.name} ` : ""}${h.hop} ${h.outcome}${h.detail ? ` (${h.detail})` : ""}`).join("; ")
  return [hops ? `hops: ${hops}` : "", t.tls ? `tls: ${showTls(t.tls)}` : ""].filter((s) => s.length > 0).join("; ")
}
