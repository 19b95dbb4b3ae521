// The node's configuration: one YAML file (snake_case keys), validated by an Effect Schema, every key defaulted.
// It only reads and checks; it never opens sockets, creates directories or generates certificates.
// Unknown keys are errors, and every problem is reported at once, one line each, with the key's path.
import { readFileSync } from "node:fs"
import { hostname as osHostname } from "node:os"
import { join } from "node:path"
import { Effect, Result as EffectResult, Schema, SchemaAST, SchemaGetter, SchemaTransformation } from "effect"
import ipaddr from "ipaddr.js"
import { LineCounter, parseDocument } from "yaml"
import type { Policy, Site } from "@missive/core"
import * as Duration from "./Duration.js"
import * as Password from "./Password.js"
import * as Problems from "./Problems.js"
import * as Size from "./Size.js"

export { hashPassword, verifyPassword } from "./Password.js"

// ---------------------------------------------------------------------------------------------
// Values: each is parsed by a plain function; `parsed` turns it into a schema whose only error
// message is "expected <what>, got <input>", so every bad value reads the same way.

export interface HostPort {
  readonly host: string
  readonly port: number
}

const HostPortShape = Schema.Struct({ host: Schema.String, port: Schema.Number })

const parsed = <T>(to: Schema.Codec<T>, expected: string, parse: (input: unknown) => T | undefined) =>
  Schema.Unknown.check(Schema.makeFilter((input: unknown) => parse(input) !== undefined, { expected })).pipe(
    Schema.decodeTo(to, SchemaTransformation.transform<T, unknown>({ decode: (input) => parse(input) as T, encode: (value) => value }))
  )

/** A key that may be left out: `value` is used when it is. */
const field = <S extends Schema.Top>(schema: S, value: S["Type"]) => schema.pipe(Schema.withDecodingDefaultTypeKey(Effect.succeed(value)))

/** A section that may be left out: all its keys take their defaults. */
const section = <S extends Schema.Top & { readonly Encoded: object }>(schema: S) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed({} as S["Encoded"])))

const integer = (min: number, max: number, expected: string) =>
  parsed(Schema.Number, expected, (u) => (typeof u === "number" && Number.isSafeInteger(u) && u >= min && u <= max ? u : undefined))

const Count = integer(1, Number.MAX_SAFE_INTEGER, "a positive integer")
const Port = integer(1, 65535, "a port number from 1 to 65535")
const ListenPort = integer(0, 65535, "a port number from 0 (any free port) to 65535")

const Bool = parsed(Schema.Boolean, "true or false", (u) => (typeof u === "boolean" ? u : undefined))

const oneOf = <const L extends ReadonlyArray<string>>(values: L) =>
  parsed(
    Schema.Literals(values),
    values
      .map((v) => JSON.stringify(v))
      .join(", ")
      .replace(/, ([^,]*)$/, " or $1"),
    (u) => (values.includes(u as string) ? (u as L[number]) : undefined)
  )

const duration = (min: number) =>
  parsed(Schema.Number, min > 0 ? `a positive ${Duration.expected.slice(2)}` : Duration.expected, (u) => {
    const ms = Duration.parse(u)
    return ms !== undefined && ms >= min ? ms : undefined
  })

const Bytes = parsed(Schema.Number, Size.expected, Size.parse)

const textValue = (expected: string, ok: (s: string) => boolean) =>
  parsed(Schema.String, expected, (u) => (typeof u === "string" && ok(u) ? u : undefined))

const nullable = <T>(schema: Schema.Codec<T>, expected: string, parse: (u: unknown) => T | undefined) =>
  parsed(Schema.NullOr(schema), `${expected} or null`, (u) => (u === null ? null : parse(u)))

const label = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
const domainPattern = new RegExp(`^${label}(?:\\.${label})*$`)

/** A lower-cased domain name without its trailing dot. */
const domainOf = (u: unknown): string | undefined => {
  if (typeof u !== "string") return undefined
  const d = u.trim().toLowerCase().replace(/\.$/, "")
  return d.length <= 253 && domainPattern.test(d) ? d : undefined
}

const Domain = parsed(Schema.String, "a domain name", domainOf)

const isIPv4 = (s: string): boolean => ipaddr.IPv4.isValidFourPartDecimal(s)
const isIPv6 = (s: string): boolean => ipaddr.IPv6.isValid(s)

/** "host:port" or "[v6 address]:port"; the host lower-cased. */
const hostPortOf = (u: unknown): HostPort | undefined => {
  if (typeof u !== "string") return undefined
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(u.trim())
  if (m === null) return undefined
  const host = m[1] !== undefined ? (isIPv6(m[1]) ? m[1].toLowerCase() : undefined) : domainOf(m[2])
  const port = Number(m[3])
  return host !== undefined && port >= 1 && port <= 65535 ? { host, port } : undefined
}

/** "nats://host:port" (or tls://); host:port alone gets nats://. */
const natsUrlOf = (u: unknown): string | undefined => {
  if (typeof u !== "string") return undefined
  const s = u.trim().includes("://") ? u.trim() : `nats://${u.trim()}`
  const m = /^(nats|tls):\/\/(?:[^@/]+@)?([^:/]+|\[[^\]]+\]):(\d{1,5})$/.exec(s)
  return m !== null && Number(m[3]) >= 1 && Number(m[3]) <= 65535 ? s : undefined
}

const HostPortValue = parsed(HostPortShape, `"host:port" with a port from 1 to 65535`, hostPortOf)

/** A DNS server as node:dns wants it: "ip", "ip:port" or "[v6]:port". */
const dnsServerOf = (u: unknown): string | undefined => {
  if (typeof u !== "string") return undefined
  const s = u.trim()
  if (isIPv4(s) || isIPv6(s)) return s
  const m = /^(?:\[([^\]]+)\]|([\d.]+)):(\d{1,5})$/.exec(s)
  if (m === null) return undefined
  const ipOk = m[1] !== undefined ? isIPv6(m[1]) : isIPv4(m[2]!)
  const port = Number(m[3])
  return ipOk && port >= 1 && port <= 65535 ? s : undefined
}

/** A network in CIDR notation, or a single address; decoded to canonical "address/prefix". */
const cidrOf = (u: unknown): string | undefined => {
  if (typeof u !== "string") return undefined
  const s = u.trim()
  const single = isIPv4(s) || isIPv6(s)
  if (!single && !ipaddr.IPv4.isValidCIDRFourPartDecimal(s) && !ipaddr.IPv6.isValidCIDR(s)) return undefined
  const [address, prefix] = single ? [ipaddr.parse(s), s.includes(":") ? 128 : 32] : ipaddr.parseCIDR(s)
  return `${address.toString()}/${prefix}`
}

const ListenHost = textValue("an IP address or host name to listen on", (s) => isIPv4(s) || isIPv6(s) || domainOf(s) !== undefined)

const Listener = (port: number) =>
  Schema.Struct({
    host: field(ListenHost, "0.0.0.0"),
    port: field(ListenPort, port),
    enabled: field(Bool, true)
  })

/** The admin HTTP listener: loopback by default; `tls: true` serves HTTPS with the `tls` section's pair. */
const HttpListener = Schema.Struct({
  host: field(ListenHost, "127.0.0.1"),
  port: field(ListenPort, 8025),
  enabled: field(Bool, true),
  tls: field(Bool, false)
})

/** A bearer token of the HTTP API: its name (recorded as `by`), the sha256 of the secret, and what it may do. */
const Token = Schema.Struct({
  name: textValue("a token name of letters, digits, ., _, @ and -", (s) => /^[A-Za-z0-9._@-]{1,64}$/.test(s)),
  // The message deliberately omits the value: it might be a plain token pasted by mistake.
  hash: Schema.String.check(
    Schema.makeFilter((s: string) => /^sha256:[0-9a-f]{64}$/.test(s), {
      message: `expected a token hash "sha256:<64 hex digits>" (made by missive token hash), not a plain token`
    })
  ),
  scope: field(oneOf(["read", "inject", "admin"]), "read")
})

const positive = (u: unknown): number | undefined => (typeof u === "number" && Number.isSafeInteger(u) && u >= 1 ? u : undefined)

/** SES's event types (send, reject, delivery, bounce, complaint, deliveryDelay) and Missive's own (deferred, expired, quarantined). */
export const EVENT_TYPES = [
  "send",
  "reject",
  "delivery",
  "bounce",
  "complaint",
  "deliveryDelay",
  "deferred",
  "expired",
  "quarantined"
] as const

/** A NATS subject to publish to: tokens of letters, digits, `_` and `-` separated by dots, no wildcards. */
const natsSubjectOf = (u: unknown): string | undefined =>
  typeof u === "string" && /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(u) && u.length <= 255 ? u : undefined

/**
 * Where delivery events go: exactly one of a webhook (HMAC-signed with `secret`), a JSON-lines file, or a NATS
 * subject (on `url`, else the cluster's own NATS connection). Events go out in batches of up to `batch_max`, waiting
 * up to `batch_wait` once caught up with the log so that what arrives meanwhile shares a request.
 */
const EventDestination = Schema.Struct({
  name: textValue("a name of letters, digits, _ and -", (s) => /^[A-Za-z0-9_-]{1,64}$/.test(s)),
  webhook: field(
    nullable(Schema.String, "an http:// or https:// URL", (u) => (typeof u === "string" && /^https?:\/\/\S+$/.test(u) ? u : undefined)),
    null
  ),
  // The message deliberately omits the value.
  secret: field(
    nullable(Schema.String, "a secret of at least 16 characters", (u) => (typeof u === "string" && u.length >= 16 ? u : undefined)),
    null
  ),
  file: field(
    nullable(Schema.String, "a file path", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
    null
  ),
  nats_subject: field(nullable(Schema.String, `a NATS subject without wildcards such as "missive.events"`, natsSubjectOf), null),
  url: field(nullable(Schema.String, `a NATS URL such as "nats://127.0.0.1:4222"`, natsUrlOf), null),
  batch_max: field(integer(1, 1000, "a batch size from 1 to 1000"), 100),
  batch_wait: field(duration(0), 200),
  types: field(Schema.Array(oneOf(EVENT_TYPES)), [...EVENT_TYPES])
}).check(
  Schema.makeFilter((d) => {
    const kinds = [d.webhook, d.file, d.nats_subject].filter((x) => x !== null).length
    if (kinds !== 1) return { path: ["webhook"], issue: "give exactly one of webhook, file or nats_subject" }
    if (d.webhook !== null && d.secret === null) return { path: ["secret"], issue: "a webhook needs a secret (its requests are signed)" }
    if (d.url !== null && d.nats_subject === null) return { path: ["url"], issue: "url is the NATS server of a nats_subject destination" }
    return undefined
  })
)

// The filter stage (nodes/src/filter): address maps, sender rules, sender authentication per listener, DKIM keys.
const Addresses = Schema.Array(Schema.String)
const AddressMap = Schema.Record(Schema.String, Addresses)
/** Per listener: whether SPF/DKIM/DMARC/ARC are checked, whether DMARC's policy is enforced, what a DNS failure gives. */
const AuthPolicy = Schema.Struct({
  verify: field(Bool, false),
  dmarc: field(oneOf(["enforce", "record"]), "record"),
  temperror: field(oneOf(["tempfail", "record"]), "tempfail")
})
// Content scanning, DNSBL, hooks and milters (nodes/src/filter/{Rspamd,Clamd,Dnsbl,Hooks,Milter}.ts). A scanner that
// fails (down, slow, garbage) gives 451 by default, or with `on_failure: accept` the message is accepted and tagged.
const OnFailure = oneOf(["tempfail", "accept"])
const Scanner = <F extends Record<string, Schema.Top>>(timeout: number, fields: F) =>
  Schema.Struct({ timeout: field(duration(1), timeout), on_failure: field(OnFailure, "tempfail"), ...fields })
const DnsblZone = Schema.Struct({
  zone: Domain,
  /** Added to the client's score when listed; a negative weight is an allowlist (DNSWL). */
  weight: field(
    parsed(Schema.Number, "a number", (u) => (typeof u === "number" && Number.isFinite(u) ? u : undefined)),
    1
  ),
  /** Only these answers count (e.g. ["127.0.0.2"]); empty: any 127.0.0.0/8 answer. */
  answers: field(Schema.Array(textValue("an IPv4 address", isIPv4)), [])
})
const ScanSections = {
  /** rspamd's normal worker ("http://127.0.0.1:11333"); null: no rspamd. */
  rspamd: section(
    Scanner(10_000, {
      url: field(
        nullable(Schema.String, `an http URL such as "http://127.0.0.1:11333"`, (u) =>
          typeof u === "string" && /^http:\/\/[^/\s]+\/?$/.test(u.trim()) ? u.trim() : undefined
        ),
        null
      ),
      password: field(
        nullable(Schema.String, "a password", (u) => (typeof u === "string" ? u : undefined)),
        null
      )
    })
  ),
  /** clamd's TCP socket ("127.0.0.1:3310"); null: no ClamAV. */
  clamav: section(
    Scanner(30_000, {
      address: field(nullable(HostPortShape, `"host:port"`, hostPortOf), null),
      /** Larger messages are not scanned (keep it at or below clamd's StreamMaxLength). */
      max_size: field(Bytes, 25_000_000)
    })
  ),
  /** Postscreen-style DNSBL/DNSWL at connect: the weights of the zones that list the client are summed. */
  dnsbl: section(
    Schema.Struct({
      zones: field(Schema.Array(DnsblZone), []),
      /** A client whose score reaches this is refused (554 5.7.1) at connect. */
      threshold: field(
        parsed(Schema.Number, "a positive number", (u) => (typeof u === "number" && u > 0 ? u : undefined)),
        1
      ),
      /** "reject" refuses; "record" only records the verdict. */
      action: field(oneOf(["reject", "record"]), "reject")
    })
  ),
  /** JavaScript/TypeScript hook modules (Haraka-style), run in this order at each SMTP stage. */
  hooks: field(Schema.Array(textValue("a module path", (s) => s.trim() !== "")), []),
  /** A hook that has not answered by then gives 451 4.3.0. */
  hook_timeout: field(duration(1), 10_000),
  /** Milters (Sendmail/Postfix milter protocol), run in this order after the built-in scanners. */
  milters: field(Schema.Array(Scanner(30_000, { address: HostPortValue })), [])
}

const FilterSection = Schema.Struct({
  recipients: section(
    Schema.Struct({
      /** Local users: full addresses, or local parts valid at every local domain. Empty with no aliases: any local part. */
      users: field(Addresses, []),
      /** Address (or "@domain", a catch-all) → the addresses it delivers to. */
      aliases: field(AddressMap, {}),
      /** "user+tag@domain" is "user@domain" for the checks; "" turns it off. */
      plus_delimiter: field(Schema.String, "+"),
      /** Relay domain → the recipients accepted for it; a relay domain not listed accepts any. */
      relay: field(AddressMap, {})
    })
  ),
  senders: section(
    Schema.Struct({
      /** Canonical rewriting of envelope addresses: address or "@domain" → address or "@domain". */
      canonical: field(Schema.Record(Schema.String, Schema.String), {}),
      /** Submission user → the sender addresses (or "@domain") it may use; a user not listed may use any. */
      logins: field(AddressMap, {})
    })
  ),
  /** YAML files with any of users, aliases, relay, canonical, logins: merged over the keys above, re-read on reload. */
  files: field(Addresses, []),
  auth: section(Schema.Struct({ smtp: section(AuthPolicy), submission: section(AuthPolicy) })),
  dkim: section(
    Schema.Struct({
      /** Signing keys (PEM, RSA or Ed25519): every key of the From: domain signs mail from submission and trusted networks. */
      keys: field(Schema.Array(Schema.Struct({ domain: Schema.String, selector: Schema.String, key: Schema.String })), [])
    })
  ),
  ...ScanSections
})

const User = Schema.Struct({
  name: textValue("a non-empty user name", (s) => s.trim() !== ""),
  // The message deliberately omits the value: it might be a plain password typed by mistake.
  password: Schema.String.check(
    Schema.makeFilter((s: string) => Password.isHash(s), {
      message: `expected a password hash "scrypt$<salt base64>$<hash base64>" (made by hashPassword), not a plain password`
    })
  )
})

const Routes = Schema.Record(Schema.String, HostPortValue)
  .check(
    Schema.makeFilter((routes: { readonly [domain: string]: HostPort }) => {
      const seen = new Set<string>()
      const issues: Array<Schema.FilterIssue> = []
      for (const key of Object.keys(routes)) {
        const domain = key === "*" ? key : domainOf(key)
        if (domain === undefined) issues.push({ path: [key], issue: `expected a domain name or "*" as the key` })
        else if (seen.has(domain)) issues.push({ path: [key], issue: `duplicate route for ${domain}` })
        else seen.add(domain)
      }
      return issues
    })
  )
  .pipe(
    Schema.decode({
      decode: SchemaGetter.transform((routes) =>
        Object.fromEntries(Object.entries(routes).map(([k, v]) => [k === "*" ? k : domainOf(k)!, v]))
      ),
      encode: SchemaGetter.passthrough()
    })
  )

// ---------------------------------------------------------------------------------------------
// The file. Defaults follow Postfix where Postfix has the same knob.

const hostnamePattern = /^[A-Za-z0-9._-]+$/
// A container may report a name we would reject; the default must always validate.
const defaultHostname = hostnamePattern.test(osHostname()) ? osHostname() : "localhost"

/** One site's limits: deliveries at once, starts per second / per hour (token buckets), messages per connection. */
const SiteLimits = Schema.Struct({
  connections: Schema.optional(Count),
  rate_per_second: Schema.optional(
    parsed(Schema.Number, "a positive number", (u) => (typeof u === "number" && Number.isFinite(u) && u > 0 ? u : undefined))
  ),
  rate_per_hour: Schema.optional(Count),
  /** Messages over one connection to the site before it is closed (default: delivery.messages_per_connection). */
  messages_per_connection: Schema.optional(Count)
})

/** A member of an egress pool: its source address, the EHLO name given from it (default: hostname), its weight. */
const EgressMember = Schema.Struct({
  address: textValue("an IP address", (s) => isIPv4(s) || isIPv6(s)),
  ehlo: Schema.optional(Domain),
  weight: Schema.optional(Count)
})

/** An automation rule: a reply that matches `match` (a regular expression) throttles or suspends the site. */
const ShapingRule = Schema.Struct({
  match: textValue("a regular expression", (s) => {
    try {
      new RegExp(s, "i")
      return s.length > 0
    } catch {
      return false
    }
  }),
  action: oneOf(["throttle", "suspend"]),
  duration: duration(1),
  connections: Schema.optional(Count),
  rate_per_second: Schema.optional(
    parsed(Schema.Number, "a positive number", (u) => (typeof u === "number" && Number.isFinite(u) && u > 0 ? u : undefined))
  ),
  rate_per_hour: Schema.optional(Count),
  /** MX host names or "*.suffix" patterns of the sites the rule reads (default: every site). */
  sites: Schema.optional(Schema.Array(Schema.String))
})

const File = Schema.Struct({
  /** Greeting, Received: and DSN Reporting-MTA name. */
  hostname: field(
    textValue("a host name", (s) => hostnamePattern.test(s)),
    defaultHostname
  ),
  /** Recorded in every event; null means the hostname. */
  node_id: field(
    nullable(Schema.String, "a non-empty node id", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
    null
  ),
  data_dir: field(
    textValue("a directory path", (s) => s.trim() !== ""),
    "./data"
  ),
  listeners: section(
    Schema.Struct({
      smtp: section(Listener(2525)),
      submission: section(Listener(2587)),
      http: section(HttpListener)
    }).check(
      Schema.makeFilter((l) =>
        l.smtp.enabled &&
        l.submission.enabled &&
        l.smtp.port !== 0 &&
        l.smtp.port === l.submission.port &&
        l.smtp.host === l.submission.host
          ? { path: ["submission", "port"], issue: `smtp and submission both listen on ${l.smtp.host}:${l.smtp.port}` }
          : undefined
      )
    )
  ),
  /** PEM file paths; both null means a self-signed pair generated in <data_dir>/tls on first start. */
  tls: section(
    Schema.Struct({
      cert: field(
        nullable(Schema.String, "a PEM file path", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
        null
      ),
      key: field(
        nullable(Schema.String, "a PEM file path", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
        null
      )
    }).check(
      Schema.makeFilter((t) =>
        (t.cert === null) !== (t.key === null)
          ? { path: [t.cert === null ? "cert" : "key"], issue: "cert and key must be given together (or both left null)" }
          : undefined
      )
    )
  ),
  auth: section(
    Schema.Struct({
      /** AUTH is offered only after STARTTLS. */
      require_tls: field(Bool, true),
      users: field(
        Schema.Array(User).check(
          Schema.makeFilter((users) => {
            const seen = new Set<string>()
            const issues: Array<Schema.FilterIssue> = []
            users.forEach((u, i) => {
              if (seen.has(u.name)) issues.push({ path: [i, "name"], issue: `duplicate user ${JSON.stringify(u.name)}` })
              seen.add(u.name)
            })
            return issues
          })
        ),
        []
      )
    })
  ),
  /** The HTTP API's tokens and limits (the listener itself is `listeners.http`). */
  http: section(
    Schema.Struct({
      tokens: field(
        Schema.Array(Token).check(
          Schema.makeFilter((tokens) => {
            const seen = new Set<string>()
            const issues: Array<Schema.FilterIssue> = []
            tokens.forEach((t, i) => {
              if (seen.has(t.name)) issues.push({ path: [i, "name"], issue: `duplicate token ${JSON.stringify(t.name)}` })
              seen.add(t.name)
            })
            return issues
          })
        ),
        []
      ),
      /** Largest request body (an injected message with its JSON); JSON API requests other than injection: 64 KiB. */
      max_body: field(Bytes, 30_000_000),
      /** A request (headers and body) must arrive within this; slower clients get 408 and are disconnected. */
      request_timeout: field(duration(1), 30_000),
      /** Most recipients of one injected message. */
      max_recipients: field(Count, 10_000)
    })
  ),
  relay: section(
    Schema.Struct({
      local_domains: field(Schema.Array(Domain), ["localhost"]),
      relay_domains: field(Schema.Array(Domain), []),
      /** Networks allowed to relay without AUTH. Empty by default: never an open relay. */
      trusted_networks: field(Schema.Array(parsed(Schema.String, `a network in CIDR notation such as "10.0.0.0/8"`, cidrOf)), [])
    })
  ),
  limits: section(
    Schema.Struct({
      max_connections: field(Count, 100),
      max_connections_per_ip: field(Count, 50),
      max_recipients: field(Count, 1000),
      max_message_size: field(Bytes, 10_240_000),
      max_line_length: field(Count, 2048),
      idle_timeout: field(duration(1), 300_000),
      max_errors: field(Count, 20),
      /** A bare LF in DATA: refuse the message, or treat it as CRLF. */
      bare_lf: field(oneOf(["reject", "normalize"]), "reject")
    })
  ),
  local: section(
    Schema.Struct({
      /** null means <data_dir>/maildir. */
      maildir: field(
        nullable(Schema.String, "a directory path", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
        null
      ),
      /** When set, local domains are delivered by LMTP to this server instead of to the Maildir. */
      lmtp: field(nullable(HostPortShape, `"host:port"`, hostPortOf), null)
    })
  ),
  /** Domain → relay host; "*" is the smarthost for every domain that is not local. */
  routes: field(Routes, {}),
  dns: section(
    Schema.Struct({
      /** Empty means the system resolvers. */
      servers: field(Schema.Array(parsed(Schema.String, `a DNS server address such as "127.0.0.1" or "127.0.0.1:5353"`, dnsServerOf)), []),
      timeout: field(duration(1), 5_000)
    })
  ),
  delivery: section(
    Schema.Struct({
      /** Port used for MX and A hosts (routes carry their own). */
      port: field(Port, 25),
      concurrency_per_destination: field(Count, 20),
      max_connections: field(Count, 200),
      connect_timeout: field(duration(1), 30_000),
      command_timeout: field(duration(1), 300_000),
      tls: field(oneOf(["opportunistic", "none", "required"]), "opportunistic"),
      reuse_connections: field(Bool, true),
      /**
       * Where the delivery role runs: "main", on the node's main thread with SMTP ingress, intake and the scheduler;
       * "worker", a thread of its own (SMTP, LMTP and Maildir clients, TLS policies), for a machine whose other cores
       * are free (on the 2-core bench machine, shared with the load, it was no faster — faster in some paired runs,
       * slower in others — at 3–9 % more CPU per message: README). A node whose clock is not the system's (a
       * simulation's) always delivers on the main thread.
       */
      thread: field(oneOf(["worker", "main"]), "main"),
      messages_per_connection: field(Count, 100),
      /** MTA-STS (RFC 8461): discover, fetch, cache (data_dir/mta-sts.json) and apply the recipient domain's policy. */
      mta_sts: field(Bool, true),
      /** A PEM file of CA certificates trusted besides the system roots, for MX certificates and MTA-STS policy hosts. */
      tls_ca_file: field(
        nullable(Schema.String, "a PEM file path", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
        null
      ),
      /** Tests and private networks: MTA-STS policy host -> "address:port" to fetch from instead of its own address:443. */
      mta_sts_hosts: field(Schema.Record(Schema.String, HostPortValue), {}),
      /** DANE (RFC 7672) for MX-routed mail: "may" (when TLSA records validate), "dane-only", or "off". */
      dane: field(oneOf(["may", "dane-only", "off"]), "may"),
      /** The validating resolver DANE trusts ("address:port", its AD bit); DANE is off while it is null. */
      dane_resolver: field(nullable(HostPortShape, `"host:port"`, hostPortOf), null),
      /** Per recipient domain: "may", "dane-only" or "off", over `dane`. */
      dane_domains: field(Schema.Record(Schema.String, oneOf(["may", "dane-only", "off"])), {})
    })
  ),
  /** Egress pools: source addresses (with an EHLO name and a weight each) that recipient domains send from. */
  egress: section(
    Schema.Struct({
      pools: field(Schema.Record(Schema.String, Schema.Array(EgressMember)), {}),
      /** The pool of recipient domains `domains` does not list; null: the system's address and `hostname`. */
      default: field(
        nullable(Schema.String, "a pool name", (u) => (typeof u === "string" && u.trim() !== "" ? u : undefined)),
        null
      ),
      /** Recipient domain -> pool name. */
      domains: field(Schema.Record(Schema.String, Schema.String), {})
    })
  ),
  /**
   * Traffic shaping per site (the MX host set several domains share): connections, start rates and messages per
   * connection; cluster-wide in a cluster.
   */
  shaping: section(
    Schema.Struct({
      /** Limits of every MX site no pattern matches (empty: concurrency_per_destination, no rate). */
      defaults: field(SiteLimits, {}),
      /** MX host name or "*.suffix" pattern -> limits; the first pattern one of a site's MX hosts matches wins. */
      sites: field(Schema.Record(Schema.String, SiteLimits), {}),
      /** Reply pattern -> throttle or suspend the site for a duration (first match wins; each change is an event). */
      rules: field(Schema.Array(ShapingRule), []),
      /**
       * The shipped presets for the large mailbox providers (nodes/assets/site-presets.yaml): their sites' limits and
       * reply rules, after this file's own (a pattern here overrides the preset's fields; these rules match first).
       */
      presets: field(Bool, true)
    })
  ),
  retry: section(
    Schema.Struct({
      initial: field(duration(1), 300_000),
      max: field(duration(1), 4_000_000),
      multiplier: field(
        parsed(Schema.Number, "a number of at least 1", (u) => (typeof u === "number" && Number.isFinite(u) && u >= 1 ? u : undefined)),
        2
      ),
      jitter: field(
        parsed(Schema.Number, "a fraction from 0 up to (not including) 1", (u) =>
          typeof u === "number" && u >= 0 && u < 1 ? u : undefined
        ),
        0.1
      ),
      lifetime: field(duration(1), 5 * 86_400_000)
    }).check(Schema.makeFilter((r) => (r.max < r.initial ? { path: ["max"], issue: "must not be less than retry.initial" } : undefined)))
  ),
  store: section(
    Schema.Struct({
      group_commit: field(duration(0), 1),
      /** Below this much free disk, intake answers 452. */
      min_free_space: field(Bytes, 100_000_000),
      /** The EventStore on EventStoreDB / KurrentDB (bodies and work stay in SQLite); null: events in SQLite. */
      eventstoredb: field(
        nullable(Schema.String, `an EventStoreDB connection string ("esdb://host:2113?tls=false")`, (u) =>
          typeof u === "string" && /^(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover|kdb|kdb\+discover):\/\/\S+$/.test(u) ? u : undefined
        ),
        null
      )
    })
  ),
  /** Bounces and notices (DSNs, RFC 3464). */
  bounce: section(
    Schema.Struct({
      /** Postfix's delay_warning_time: one "delayed" notice per message still deferred this long after arrival. */
      delay_warning: field(
        nullable(Schema.Number, `a duration such as "4h"`, (u) => {
          const ms = Duration.parse(u)
          return ms !== undefined && ms > 0 ? ms : undefined
        }),
        null
      )
    })
  ),
  /** Delivery events pushed out (SES event publishing): each destination follows the event log from its own checkpoint. */
  events: section(
    Schema.Struct({
      destinations: field(
        Schema.Array(EventDestination).check(
          Schema.makeFilter((ds) => {
            const seen = new Set<string>()
            const issues: Array<Schema.FilterIssue> = []
            ds.forEach((d, i) => {
              if (seen.has(d.name)) issues.push({ path: [i, "name"], issue: `duplicate destination ${JSON.stringify(d.name)}` })
              seen.add(d.name)
            })
            return issues
          })
        ),
        []
      )
    })
  ),
  /** Addresses Missive no longer sends to: refused at RCPT on submission, bounced at once when relayed. */
  suppression: section(
    Schema.Struct({
      /** A permanent bounce (SES bounceType Permanent) adds the recipient. */
      on_bounce: field(Bool, true),
      /** A feedback report (complaint) adds the recipient. */
      on_complaint: field(Bool, true),
      /** Where feedback loops send ARF reports (RFC 5965), in a local domain: each is matched and recorded. */
      feedback_address: field(
        nullable(Schema.String, "an address such as fbl@example.com", (u) =>
          typeof u === "string" && /^[^\s@<>]+@[^\s@<>]+$/.test(u.trim()) ? u.trim().toLowerCase() : undefined
        ),
        null
      )
    })
  ),
  /** Sending quotas per authenticated user (SES's maximum send rate and 24-hour quota); null means no limit. */
  quotas: section(
    Schema.Struct({
      per_second: field(nullable(Schema.Number, "a positive integer", positive), null),
      per_day: field(nullable(Schema.Number, "a positive integer", positive), null),
      /** Per-user overrides of the two limits, by user name. */
      users: field(
        Schema.Record(
          Schema.String,
          Schema.Struct({
            per_second: field(nullable(Schema.Number, "a positive integer", positive), null),
            per_day: field(nullable(Schema.Number, "a positive integer", positive), null)
          })
        ),
        {}
      )
    })
  ),
  /** The filter stage: recipients, senders, sender authentication, DKIM signing (README "Filtering"). */
  filter: section(FilterSection),
  /** The node's log lines: JSON lines (default) or a human format; the least level written (MISSIVE_LOG_LEVEL overrides). */
  log: section(
    Schema.Struct({
      format: field(oneOf(["json", "human"]), "json"),
      level: field(oneOf(["debug", "info", "warn", "error"]), "info")
    })
  ),
  /** Cluster mode: NATS URLs of a JetStream cluster; empty means an embedded node (SQLite). `start --nats` overrides. */
  cluster: section(
    Schema.Struct({
      nats: field(Schema.Array(parsed(Schema.String, `a NATS URL such as "nats://127.0.0.1:4222"`, natsUrlOf)), []),
      /** JetStream replicas of the log, bodies and work index; 0 means 3 when 3 or more URLs are given, else 1. */
      replicas: field(integer(0, 5, "a replica count from 0 (automatic) to 5"), 0),
      /** No longer used (the work index is the inbox shards' consumer); accepted so older configurations still load. */
      partitions: field(integer(1, 1024, "a partition count from 1 to 1024"), 16),
      /** Inbox shards (work-queue streams, each with its own leader); 0 = one per NATS URL. Fixed for the life of a cluster. */
      shards: field(integer(0, 64, "a shard count from 0 (one per server) to 64"), 0),
      /** How long a node's hold on a message or partition lasts without renewal: the failover time after a kill -9. */
      lease: field(duration(500), 4_000),
      /** Prefix of the streams, buckets and subjects, so that clusters can share one NATS. */
      prefix: field(
        textValue("a name of letters, digits, _ and -", (s) => /^[A-Za-z0-9_-]+$/.test(s)),
        "missive"
      )
    })
  )
})

type Decoded = typeof File.Type

/** The decoded configuration: the YAML keys as written, durations in ms, sizes in bytes, `node_id` and `local.maildir` resolved. */
export type Config = Decoded & {
  readonly node_id: string
  readonly local: Decoded["local"] & { readonly maildir: string }
}

export type User = Config["auth"]["users"][number]
export type Listener = Config["listeners"]["smtp"]
export type Token = Config["http"]["tokens"][number]

export type Result = { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly errors: ReadonlyArray<string> }

const resolve = (d: Decoded): Config => ({
  ...d,
  node_id: d.node_id ?? d.hostname,
  local: { ...d.local, maildir: d.local.maildir ?? join(d.data_dir, "maildir") }
})

// ---------------------------------------------------------------------------------------------
// Entry points.

const decode = Schema.decodeUnknownResult(File)
const options: SchemaAST.ParseOptions = { errors: "all", onExcessProperty: "error", reportInput: true }

/** Parses and validates configuration text. `source` (a file name) prefixes each error with "source:line:col: ". */
export const parse = (text: string, source?: string): Result => {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number): string => {
    if (!Number.isFinite(offset)) return source === undefined ? "" : `${source}: `
    const { line, col } = lines.linePos(offset)
    return source === undefined ? `${line}:${col}: ` : `${source}:${line}:${col}: `
  }
  if (doc.errors.length > 0) {
    return { ok: false, errors: doc.errors.map((e) => `${at(e.pos[0])}${e.message.split("\n")[0]}`) }
  }
  const input = doc.toJS() ?? {}
  const result = decode(input, options)
  if (EffectResult.isSuccess(result)) return { ok: true, config: resolve(result.success) }
  // In file order, so the list reads top to bottom like the file.
  const located = Problems.fromIssue(result.failure.issue).map((p) => ({ ...p, offset: Problems.offsetOf(doc, p.path) ?? Infinity }))
  located.sort((a, b) => a.offset - b.offset)
  const errors = located.map((p) => `${source === undefined ? "" : at(p.offset)}${Problems.formatPath(p.path)}: ${p.message}`)
  return { ok: false, errors }
}

/** Reads a configuration file. No path means the defaults; a path that cannot be read is an error. */
export const load = (path?: string): Result => {
  if (path === undefined) return { ok: true, config: defaults }
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return {
      ok: false,
      errors: [`${path}: cannot read configuration file (${code === "ENOENT" ? "no such file" : (code ?? String(error))})`]
    }
  }
  return parse(text, path)
}

const initial = parse("")
if (!initial.ok) throw new Error(`Missive's default configuration does not validate:\n${initial.errors.join("\n")}`)

/** The configuration an empty file gives. */
export const defaults: Config = initial.config

/** The retry schedule core's decider uses. */
export const policyOf = (config: Config): Policy.RetryPolicy => ({
  initialMs: config.retry.initial,
  maxMs: config.retry.max,
  multiplier: config.retry.multiplier,
  jitter: config.retry.jitter,
  lifetimeMs: config.retry.lifetime
})

/** The site automation rules core's Site decider reads (`shaping.rules`). */
export const shapingRulesOf = (config: Config): ReadonlyArray<Site.Rule> =>
  config.shaping.rules.map((r) => ({
    match: r.match,
    action: r.action,
    durationMs: r.duration,
    connections: r.connections,
    perSecond: r.rate_per_second,
    perHour: r.rate_per_hour,
    sites: r.sites
  }))
