// Bearer tokens of the HTTP API: the configuration keeps only "sha256:<hex>" of each token; a request's token is
// hashed and compared in constant time with every configured hash. Scopes: read ⊂ admin, inject ⊂ admin.
// Security: never logs or returns a token; tokens are random (missive token new), so a plain sha256 is enough and
// keeps a request's check cheap (no scrypt per request), unlike passwords.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

export type Scope = "read" | "inject" | "admin"
/** What a route needs: nothing (health, the dashboard's static page), or a token of a scope that allows it. */
export type Need = "public" | Scope

export interface Token {
  readonly name: string
  readonly scope: Scope
}

const digest = (plain: string): Buffer => createHash("sha256").update(plain, "utf8").digest()

/** The configuration form of a token: "sha256:<64 hex digits>". */
export const hash = (plain: string): string => `sha256:${digest(plain).toString("hex")}`

/** A fresh random token (192 bits), prefixed so that it is recognisable in a secret scanner. */
export const generate = (): string => `msv_${randomBytes(24).toString("base64url")}`

export const allows = (scope: Scope, need: Need): boolean => need === "public" || scope === "admin" || scope === need

export interface Tokens {
  /** The token a presented secret is, or undefined. Compares with every configured hash (no early exit). */
  find(plain: string): Token | undefined
}

export const make = (configured: ReadonlyArray<{ readonly name: string; readonly hash: string; readonly scope: Scope }>): Tokens => {
  const known = configured.map((t) => ({ name: t.name, scope: t.scope, digest: Buffer.from(t.hash.slice("sha256:".length), "hex") }))
  return {
    find: (plain) => {
      const d = digest(plain)
      let found: Token | undefined
      for (const t of known) if (timingSafeEqual(d, t.digest) && found === undefined) found = { name: t.name, scope: t.scope }
      return found
    }
  }
}
