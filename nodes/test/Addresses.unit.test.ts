// The address rules (nodes/src/filter/Addresses.ts), pure over their maps: recipients at local domains, aliases and
// their loops, catch-alls, plus-addressing, relay recipient lists, canonical rewriting, submission logins.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { Config } from "../src/index.js"
import * as Addresses from "../src/filter/Addresses.js"

const section = (filter: Record<string, unknown>) => {
  const r = Config.parse(JSON.stringify({ filter }))
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return r.config.filter
}

const maps = Addresses.load(
  section({
    recipients: {
      users: ["ann@example.org", "bob"],
      aliases: {
        "team@example.org": ["ann@example.org", "carol@elsewhere.test"],
        "loop-a@example.org": ["loop-b@example.org"],
        "loop-b@example.org": ["loop-a@example.org"],
        "@catch.example": ["ann@example.org"]
      },
      relay: { "relay.test": ["ok@relay.test"] }
    },
    senders: {
      canonical: { "@old.example": "@example.org", "root@example.org": "admin@example.org" },
      logins: { ann: ["ann@example.org", "@ann.test"] }
    }
  }),
  ["example.org", "catch.example"]
)

describe("address rules", () => {
  it("accepts users (full or bare local part) and plus-addresses; refuses unknown local users", () => {
    expect(Addresses.checkRecipient(maps, "ann@example.org")).toEqual({ ok: true, recipients: ["ann@example.org"], how: "user" })
    expect(Addresses.checkRecipient(maps, "BOB@example.org").ok).toBe(true)
    expect(Addresses.checkRecipient(maps, "ann+news@example.org")).toEqual({ ok: true, recipients: ["ann@example.org"], how: "plus" })
    expect(Addresses.checkRecipient(maps, "nobody@example.org")).toEqual({ ok: false, reason: "no such user" })
    expect(Addresses.checkRecipient(maps, "postmaster@example.org").ok).toBe(true)
  })

  it("expands aliases, stops alias loops, and uses a domain's catch-all", () => {
    expect(Addresses.checkRecipient(maps, "team@example.org")).toEqual({
      ok: true,
      recipients: ["ann@example.org", "carol@elsewhere.test"],
      how: "alias"
    })
    const loop = Addresses.checkRecipient(maps, "loop-a@example.org")
    expect(loop).toEqual({ ok: true, recipients: ["loop-a@example.org"], how: "alias" })
    expect(Addresses.checkRecipient(maps, "whoever@catch.example")).toEqual({ ok: true, recipients: ["ann@example.org"], how: "catch-all" })
  })

  it("checks a relay domain's list, and leaves other remote domains alone", () => {
    expect(Addresses.checkRecipient(maps, "ok@relay.test").ok).toBe(true)
    expect(Addresses.checkRecipient(maps, "no@relay.test").ok).toBe(false)
    expect(Addresses.checkRecipient(maps, "x@anywhere.test").ok).toBe(true)
  })

  it("rewrites canonically by address, then by domain keeping the local part", () => {
    expect(Addresses.canonicalOf(maps, "root@example.org")).toBe("admin@example.org")
    expect(Addresses.canonicalOf(maps, "joe@old.example")).toBe("joe@example.org")
    expect(Addresses.canonicalOf(maps, "joe@new.example")).toBe("joe@new.example")
  })

  it("holds a login to its addresses; a login not listed may use any", () => {
    expect(Addresses.mayUse(maps, "ann", "ann@example.org")).toBe(true)
    expect(Addresses.mayUse(maps, "ann", "any@ann.test")).toBe(true)
    expect(Addresses.mayUse(maps, "ann", "bob@example.org")).toBe(false)
    expect(Addresses.mayUse(maps, "zed", "bob@example.org")).toBe(true)
  })

  it("with no users and no aliases, every local part is accepted (no check configured)", () => {
    const open = Addresses.load(section({}), ["example.org"])
    expect(Addresses.checkRecipient(open, "anyone@example.org").ok).toBe(true)
  })

  it("reads map files, and refuses a malformed one with its name and key", () => {
    const dir = mkdtempSync(join(tmpdir(), "missive-maps-"))
    try {
      const good = join(dir, "good.yaml")
      writeFileSync(good, "users: [dan@example.org]\naliases:\n  sales@example.org: dan@example.org\n")
      const m = Addresses.load(section({ files: [good] }), ["example.org"])
      expect(Addresses.checkRecipient(m, "sales@example.org")).toEqual({ ok: true, recipients: ["dan@example.org"], how: "alias" })
      const bad = join(dir, "bad.yaml")
      writeFileSync(bad, "aliasez: {}\n")
      expect(() => Addresses.load(section({ files: [bad] }), ["example.org"])).toThrow(/bad\.yaml: aliasez: unknown key/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
