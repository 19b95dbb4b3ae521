// The configuration file: defaults, precise errors (path and line:column), durations, sizes, password hashes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { tmpdir } from "node:os"
import { afterAll, describe, expect, it } from "vitest"
import { Policy } from "@missive/core"
import * as Config from "../src/config/Config.js"
import * as Duration from "../src/config/Duration.js"
import * as Size from "../src/config/Size.js"

const ok = (text: string): Config.Config => {
  const result = Config.parse(text)
  if (!result.ok) throw new Error(`expected a valid configuration, got:\n${result.errors.join("\n")}`)
  return result.config
}

const errors = (text: string, source?: string): ReadonlyArray<string> => {
  const result = Config.parse(text, source)
  if (result.ok) throw new Error("expected configuration errors, got a valid configuration")
  return result.errors
}

describe("defaults", () => {
  it("an empty file, an empty mapping and a file of comments all give the defaults", () => {
    expect(ok("")).toEqual(Config.defaults)
    expect(ok("{}")).toEqual(Config.defaults)
    expect(ok("# nothing here\n")).toEqual(Config.defaults)
    expect(Config.load()).toEqual({ ok: true, config: Config.defaults })
  })

  it("are the documented Postfix-like values", () => {
    const d = Config.defaults
    expect(d.hostname).toBe(hostname())
    expect(d.node_id).toBe(d.hostname)
    expect(d.data_dir).toBe("./data")
    expect(d.listeners).toEqual({
      smtp: { host: "0.0.0.0", port: 2525, enabled: true },
      submission: { host: "0.0.0.0", port: 2587, enabled: true },
      http: { host: "127.0.0.1", port: 8025, enabled: true, tls: false }
    })
    expect(d.http).toEqual({ tokens: [], max_body: 30_000_000, request_timeout: 30_000, max_recipients: 10_000 })
    expect(d.tls).toEqual({ cert: null, key: null })
    expect(d.auth).toEqual({ require_tls: true, users: [] })
    expect(d.relay).toEqual({ local_domains: ["localhost"], relay_domains: [], trusted_networks: [] })
    expect(d.limits).toEqual({
      max_connections: 100,
      max_connections_per_ip: 50,
      max_recipients: 1000,
      max_message_size: 10_240_000,
      max_line_length: 2048,
      idle_timeout: 300_000,
      max_errors: 20,
      bare_lf: "reject"
    })
    expect(d.local).toEqual({ maildir: join("data", "maildir"), lmtp: null })
    expect(d.routes).toEqual({})
    expect(d.dns).toEqual({ servers: [], timeout: 5_000 })
    expect(d.delivery).toEqual({
      port: 25,
      concurrency_per_destination: 20,
      max_connections: 200,
      connect_timeout: 30_000,
      command_timeout: 300_000,
      tls: "opportunistic",
      reuse_connections: true,
      thread: "main",
      messages_per_connection: 100,
      mta_sts: true,
      tls_ca_file: null,
      mta_sts_hosts: {},
      dane: "may",
      dane_resolver: null,
      dane_domains: {}
    })
    expect(d.store).toEqual({ group_commit: 1, min_free_space: 100_000_000, eventstoredb: null })
  })

  it("give core's default retry policy", () => {
    expect(Config.policyOf(Config.defaults)).toEqual(Policy.defaultRetry)
  })

  it("fill in the keys a section leaves out", () => {
    const config = ok("limits:\n  max_recipients: 5\nlisteners:\n  smtp: { port: 0 }\n")
    expect(config.limits).toEqual({ ...Config.defaults.limits, max_recipients: 5 })
    expect(config.listeners.smtp).toEqual({ host: "0.0.0.0", port: 0, enabled: true })
    expect(config.listeners.submission).toEqual(Config.defaults.listeners.submission)
  })

  it("resolve node_id from hostname and the maildir from data_dir unless they are given", () => {
    const derived = ok("hostname: mx.example.com\ndata_dir: /var/lib/missive\n")
    expect(derived.node_id).toBe("mx.example.com")
    expect(derived.local.maildir).toBe("/var/lib/missive/maildir")
    const given = ok("hostname: mx.example.com\nnode_id: node-2\nlocal: { maildir: /srv/mail }\n")
    expect(given.node_id).toBe("node-2")
    expect(given.local.maildir).toBe("/srv/mail")
  })
})

describe("errors", () => {
  it("name the offending key's path and the value", () => {
    expect(errors("limits:\n  max_recipients: abc\n")).toEqual([`limits.max_recipients: expected a positive integer, got "abc"`])
    expect(errors("limits:\n  max_recipients: 0\n")).toEqual([`limits.max_recipients: expected a positive integer, got 0`])
    expect(errors("listeners:\n  submission: { port: 70000 }\n")).toEqual([
      `listeners.submission.port: expected a port number from 0 (any free port) to 65535, got 70000`
    ])
    expect(errors("limits: { bare_lf: maybe }")).toEqual([`limits.bare_lf: expected "reject" or "normalize", got "maybe"`])
    expect(errors("delivery: { reuse_connections: yes }")).toEqual([`delivery.reuse_connections: expected true or false, got "yes"`])
    expect(errors("relay: { local_domains: [example.com, 'bad domain'] }")).toEqual([
      `relay.local_domains[1]: expected a domain name, got "bad domain"`
    ])
    expect(errors("relay: { relay_domains: example.com }")).toEqual([`relay.relay_domains: expected a list, got "example.com"`])
    expect(errors("limits: 5")).toEqual([`limits: expected a mapping, got 5`])
    expect(errors("- a\n- b\n")).toEqual([`(top level): expected a mapping, got a list`])
  })

  it("are all reported at once, in file order", () => {
    const text = ["limits:", "  max_errors: -1", "  idle_timeout: soon", "delivery:", "  tls: always", "retry:", "  jitter: 2"].join("\n")
    expect(errors(text)).toEqual([
      `limits.max_errors: expected a positive integer, got -1`,
      `limits.idle_timeout: expected a positive ${Duration.expected.slice(2)}, got "soon"`,
      `delivery.tls: expected "opportunistic", "none" or "required", got "always"`,
      `retry.jitter: expected a fraction from 0 up to (not including) 1, got 2`
    ])
  })

  it("carry the file name and line:column when the source is named", () => {
    expect(errors("hostname: mx\nlimits:\n  max_recipients: abc\n", "missive.yaml")).toEqual([
      `missive.yaml:3:3: limits.max_recipients: expected a positive integer, got "abc"`
    ])
  })

  it("reject unknown keys with their path, suggesting the near miss", () => {
    expect(errors("limits:\n  max_recipents: 10\n")).toEqual([`limits.max_recipents: unknown key (did you mean max_recipients?)`])
    expect(errors("listeners: { smtp: { prot: 25 } }")).toEqual([`listeners.smtp.prot: unknown key (did you mean port?)`])
    const [top] = errors("colour: blue")
    expect(top).toMatch(/^colour: unknown key \(expected one of: hostname, node_id, data_dir, /)
  })

  it("check values that depend on each other", () => {
    expect(errors("tls: { cert: /etc/missive/cert.pem }")).toEqual([`tls.key: cert and key must be given together (or both left null)`])
    expect(errors("retry: { initial: 1h, max: 5m }")).toEqual([`retry.max: must not be less than retry.initial`])
    expect(errors("listeners: { submission: { port: 2525 } }")).toEqual([
      `listeners.submission.port: smtp and submission both listen on 0.0.0.0:2525`
    ])
  })
})

describe("events destinations", () => {
  it("take a webhook, a file or a NATS subject, batched by default in 100s after 200 ms", () => {
    const c = ok(
      [
        "events:",
        "  destinations:",
        "    - { name: hook, webhook: 'https://hooks.test/ses', secret: 0123456789abcdef, batch_max: 10, batch_wait: 1s }",
        "    - { name: bus, nats_subject: missive.events, url: '127.0.0.1:4222', types: [delivery, bounce] }",
        "    - { name: cluster-bus, nats_subject: missive.events }"
      ].join("\n")
    )
    expect(c.events.destinations.map((d) => [d.name, d.batch_max, d.batch_wait])).toEqual([
      ["hook", 10, 1000],
      ["bus", 100, 200],
      ["cluster-bus", 100, 200]
    ])
    expect(c.events.destinations[1]).toMatchObject({ nats_subject: "missive.events", url: "nats://127.0.0.1:4222", webhook: null })
  })

  it("refuse a destination that is not exactly one kind, a wildcard subject, and a url without a subject", () => {
    const one = (d: string) => errors(`events: { destinations: [${d}] }`)
    expect(one("{ name: a, nats_subject: x.y, file: /tmp/x }")).toEqual([
      `events.destinations[0].webhook: give exactly one of webhook, file or nats_subject`
    ])
    expect(one("{ name: a, nats_subject: 'x.>' }")).toEqual([
      `events.destinations[0].nats_subject: expected a NATS subject without wildcards such as "missive.events" or null, got "x.>"`
    ])
    expect(one("{ name: a, file: /tmp/x, url: 'nats://127.0.0.1:4222' }")).toEqual([
      `events.destinations[0].url: url is the NATS server of a nats_subject destination`
    ])
    expect(one("{ name: a, file: /tmp/x, batch_max: 0 }")).toEqual([
      `events.destinations[0].batch_max: expected a batch size from 1 to 1000, got 0`
    ])
  })
})

describe("routes and relay", () => {
  it("decode routes and LMTP as host and port, lower-casing domains", () => {
    const config = ok(`routes: { Example.COM.: "Relay.Example.net:2525", "*": "[::1]:25" }\nlocal: { lmtp: "127.0.0.1:24" }\n`)
    expect(config.routes).toEqual({ "example.com": { host: "relay.example.net", port: 2525 }, "*": { host: "::1", port: 25 } })
    expect(config.local.lmtp).toEqual({ host: "127.0.0.1", port: 24 })
    expect(ok("relay: { local_domains: [Example.ORG] }").relay.local_domains).toEqual(["example.org"])
  })

  it("reject a route or LMTP server that is not host:port", () => {
    const expected = `expected "host:port" with a port from 1 to 65535`
    expect(errors(`routes: { example.com: "relay.example.net" }`)).toEqual([`routes["example.com"]: ${expected}, got "relay.example.net"`])
    expect(errors(`routes: { example.com: "relay:0" }`)).toEqual([`routes["example.com"]: ${expected}, got "relay:0"`])
    expect(errors(`routes: { "a b": "relay:25" }`)).toEqual([`routes["a b"]: expected a domain name or "*" as the key`])
    expect(errors(`local: { lmtp: "localhost" }`)).toEqual([`local.lmtp: expected "host:port" or null, got "localhost"`])
  })

  it("validate trusted networks as CIDRs (a bare address is one host)", () => {
    expect(ok(`relay: { trusted_networks: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"] }`).relay.trusted_networks).toEqual([
      "10.0.0.0/8",
      "192.0.2.7/32",
      "2001:db8::/32"
    ])
    expect(errors(`relay: { trusted_networks: ["10.0.0.0/33"] }`)).toEqual([
      `relay.trusted_networks[0]: expected a network in CIDR notation such as "10.0.0.0/8", got "10.0.0.0/33"`
    ])
  })

  it("validate DNS servers as addresses with an optional port", () => {
    expect(ok(`dns: { servers: ["127.0.0.1:5353", "::1", "[::1]:53"] }`).dns.servers).toEqual(["127.0.0.1:5353", "::1", "[::1]:53"])
    expect(errors(`dns: { servers: ["dns.example.com"] }`)).toHaveLength(1)
  })
})

describe("durations and sizes", () => {
  it.each([
    ["300ms", 300],
    ["5s", 5_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["5d", 432_000_000],
    ["1.5s", 1_500],
    [250, 250],
    [0, 0]
  ] as const)("duration %j is %i ms", (input, ms) => {
    expect(Duration.parse(input)).toBe(ms)
  })

  it.each(["5", "5 minutes", "-1s", "s", "1w", true, null, -5, 1.5])("%j is not a duration", (input) => {
    expect(Duration.parse(input)).toBeUndefined()
  })

  it.each([
    ["512KB", 512_000],
    ["10MB", 10_000_000],
    ["1GiB", 1_073_741_824],
    ["512KiB", 524_288],
    ["100 mb", 100_000_000],
    ["2048B", 2048],
    [10_240_000, 10_240_000]
  ] as const)("size %j is %i bytes", (input, bytes) => {
    expect(Size.parse(input)).toBe(bytes)
  })

  it.each(["10", "10XB", "MB", "-1MB", false, -1, 0.5])("%j is not a size", (input) => {
    expect(Size.parse(input)).toBeUndefined()
  })

  it("decode to milliseconds and bytes in the configuration", () => {
    const config = ok(
      "retry: { initial: 30s, max: 1h, lifetime: 2d }\nlimits: { max_message_size: 25MB }\nstore: { group_commit: 0, min_free_space: 1GiB }\n"
    )
    expect(Config.policyOf(config)).toEqual({ initialMs: 30_000, maxMs: 3_600_000, multiplier: 2, jitter: 0.1, lifetimeMs: 172_800_000 })
    expect(config.limits.max_message_size).toBe(25_000_000)
    expect(config.store).toEqual({ group_commit: 0, min_free_space: 1_073_741_824, eventstoredb: null })
  })

  it("store.eventstoredb selects EventStoreDB for events by a connection string, nothing else", () => {
    expect(ok('store: { eventstoredb: "esdb://127.0.0.1:2113?tls=false" }\n').store.eventstoredb).toBe("esdb://127.0.0.1:2113?tls=false")
    expect(ok('store: { eventstoredb: "kurrentdb+discover://a,b,c" }\n').store.eventstoredb).toBe("kurrentdb+discover://a,b,c")
    expect(errors('store: { eventstoredb: "http://127.0.0.1:2113" }')[0]).toMatch(
      /^store\.eventstoredb: expected an EventStoreDB connection string/
    )
  })

  it("report a bad duration or size with its path", () => {
    expect(errors("dns: { timeout: 0 }")).toEqual([`dns.timeout: expected a positive ${Duration.expected.slice(2)}, got 0`])
    expect(errors("store: { min_free_space: lots }")).toEqual([`store.min_free_space: expected ${Size.expected}, got "lots"`])
  })
})

describe("passwords", () => {
  it("a hash verifies its password and no other", async () => {
    const hash = await Config.hashPassword("correct horse")
    expect(hash).toMatch(/^scrypt\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
    expect(await Config.verifyPassword("correct horse", hash)).toBe(true)
    expect(await Config.verifyPassword("correct horse ", hash)).toBe(false)
    expect(await Config.hashPassword("correct horse")).not.toBe(hash)
  })

  it("a malformed hash verifies nothing", async () => {
    expect(await Config.verifyPassword("x", "x")).toBe(false)
    expect(await Config.verifyPassword("x", "scrypt$$")).toBe(false)
    expect(await Config.verifyPassword("x", "bcrypt$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==")).toBe(false)
  })

  it("users take hashes, never plain passwords, and the error does not echo the password", async () => {
    const hash = await Config.hashPassword("s3cret")
    expect(ok(`auth:\n  users:\n    - { name: alice, password: "${hash}" }\n`).auth.users).toEqual([{ name: "alice", password: hash }])
    const [error, ...rest] = errors("auth:\n  users:\n    - { name: alice, password: hunter2 }\n")
    expect(rest).toEqual([])
    expect(error).toMatch(/^auth\.users\[0\]\.password: expected a password hash/)
    expect(error).not.toContain("hunter2")
    expect(errors(`auth:\n  users:\n    - { name: bob, password: "${hash}" }\n    - { name: bob, password: "${hash}" }\n`)).toEqual([
      `auth.users[1].name: duplicate user "bob"`
    ])
    expect(errors(`auth:\n  users:\n    - { password: "${hash}" }\n`)).toEqual([`auth.users[0].name: required key is missing`])
  })

  it("HTTP tokens take sha256 hashes and a scope, and the error does not echo a pasted token", () => {
    const hash = `sha256:${"ab".repeat(32)}`
    expect(ok(`http:\n  tokens:\n    - { name: ops, hash: "${hash}", scope: admin }\n`).http.tokens).toEqual([
      { name: "ops", hash, scope: "admin" }
    ])
    expect(ok(`http:\n  tokens:\n    - { name: grafana, hash: "${hash}" }\n`).http.tokens[0]!.scope).toBe("read")
    const [error, ...rest] = errors("http:\n  tokens:\n    - { name: ops, hash: msv_secret_token }\n")
    expect(rest).toEqual([])
    expect(error).toMatch(/^http\.tokens\[0\]\.hash: expected a token hash "sha256:<64 hex digits>"/)
    expect(error).not.toContain("msv_secret_token")
    expect(errors(`http:\n  tokens:\n    - { name: ops, hash: "${hash}", scope: root }\n`)).toEqual([
      `http.tokens[0].scope: expected "read", "inject" or "admin", got "root"`
    ])
    expect(errors(`listeners:\n  http: { port: 70000 }\n`)).toEqual([
      `listeners.http.port: expected a port number from 0 (any free port) to 65535, got 70000`
    ])
  })
})

describe("YAML syntax", () => {
  it("an error gives line:column", () => {
    expect(errors("hostname: mx\nlimits: [1, 2\nstore: {}\n")).toEqual([
      "3:1: Flow sequence in block collection must be sufficiently indented and end with a ]"
    ])
    expect(errors("relay:\n\t- local_domains: []\n", "missive.yaml")).toEqual(["missive.yaml:2:1: Tabs are not allowed as indentation"])
  })

  it("a duplicate key is an error, not a silent override", () => {
    expect(errors("hostname: a\nhostname: b\n")[0]).toMatch(/^2:1: Map keys must be unique/)
  })
})

describe("load", () => {
  const dir = mkdtempSync(join(tmpdir(), "missive-config-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("reads a file and names it in errors", () => {
    const file = join(dir, "missive.yaml")
    writeFileSync(file, "hostname: mx.example.com\nlimits:\n  max_errors: many\n")
    expect(Config.load(file)).toEqual({ ok: false, errors: [`${file}:3:3: limits.max_errors: expected a positive integer, got "many"`] })
    writeFileSync(file, "hostname: mx.example.com\n")
    const result = Config.load(file)
    expect(result.ok && result.config.hostname).toBe("mx.example.com")
  })

  it("a path given but missing is an error", () => {
    const file = join(dir, "absent.yaml")
    expect(Config.load(file)).toEqual({ ok: false, errors: [`${file}: cannot read configuration file (no such file)`] })
  })
})
