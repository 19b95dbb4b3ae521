// DKIM signing (outbound) of mail from local domains: what arrives on submission from an authenticated user, or from
// a trusted network, is signed with every key configured for its From: domain (rotation: add a selector, publish it,
// then remove the old one). RSA and Ed25519 keys (RFC 8463). Must not verify anything (Auth.ts) nor sign mail
// relayed for others: a message from an unauthenticated, untrusted client is passed on untouched.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto"
import { readFileSync } from "node:fs"
import { dkimSign } from "mailauth"
import type { Config } from "../config/Config.js"
import type { DataContext, Filter, StageResult } from "./Filter.js"
import * as Headers from "./internal/Headers.js"

export interface SigningKey {
  readonly domain: string
  readonly selector: string
  readonly pem: string
  readonly algorithm: "rsa-sha256" | "ed25519-sha256"
}

/** Reads a PEM private key and says which algorithm it signs with; throws on anything but RSA or Ed25519. */
export const readKey = (domain: string, selector: string, path: string): SigningKey => {
  const pem = readFileSync(path, "utf8")
  const type = createPrivateKey(pem).asymmetricKeyType
  if (type !== "rsa" && type !== "ed25519") throw new Error(`${path}: a DKIM key must be RSA or Ed25519, not ${type}`)
  return { domain: domain.toLowerCase(), selector, pem, algorithm: type === "rsa" ? "rsa-sha256" : "ed25519-sha256" }
}

/** The domain of the (first) address in a From: value. */
export const authorDomain = (value: string): string | undefined => {
  const angle = /<[^<>@]*@([^<>\s]+)>/.exec(value)
  const bare = angle ?? /@([A-Za-z0-9.-]+)/.exec(value)
  return bare?.[1]?.toLowerCase().replace(/\.$/, "")
}

export const make = (keys: ReadonlyArray<SigningKey>, now: () => number): Filter => {
  const byDomain = new Map<string, Array<SigningKey>>()
  for (const k of keys) byDomain.set(k.domain, [...(byDomain.get(k.domain) ?? []), k])
  const data = async (c: DataContext): Promise<StageResult> => {
    const ours = (c.session.listener === "submission" && c.session.user !== undefined) || c.session.trusted
    if (!ours) return { verdicts: [] }
    const from = Headers.first(c.message, "from")
    const domain = from ? authorDomain(from.value) : undefined
    const signing = domain ? byDomain.get(domain) : undefined
    if (!domain || !signing) return { verdicts: [] }
    const r = await dkimSign(c.message, {
      canonicalization: "relaxed/relaxed",
      signTime: new Date(now()),
      signatureData: signing.map((k) => ({ signingDomain: k.domain, selector: k.selector, privateKey: k.pem, algorithm: k.algorithm }))
    } as never)
    const signed = signing.map((k) => `d=${k.domain} s=${k.selector} a=${k.algorithm}`).join(", ")
    if (r.errors.length > 0 || !r.signatures)
      return {
        verdicts: [{ name: "dkim-sign", stage: "data", result: "error", action: "accept", detail: JSON.stringify(r.errors).slice(0, 500) }]
      }
    return {
      verdicts: [{ name: "dkim-sign", stage: "data", result: "signed", action: "add-headers", detail: signed }],
      message: Buffer.concat([Buffer.from(r.signatures, "utf8"), c.message])
    }
  }
  return { name: "dkim-sign", data }
}

export const fromConfig = (config: Config, now: () => number): Filter | undefined =>
  config.filter.dkim.keys.length === 0
    ? undefined
    : make(
        config.filter.dkim.keys.map((k) => readKey(k.domain, k.selector, k.key)),
        now
      )

/** A DNS TXT record value publishing the public half of a key (RFC 6376 3.6.1; Ed25519: the raw 32-byte key, RFC 8463). */
export const txtRecord = (pem: string): string => {
  const pub = createPublicKey(pem)
  if (pub.asymmetricKeyType === "ed25519") {
    const x = (pub.export({ format: "jwk" }) as { x?: string }).x ?? ""
    return `v=DKIM1; k=ed25519; p=${Buffer.from(x, "base64url").toString("base64")}`
  }
  return `v=DKIM1; k=rsa; p=${pub.export({ type: "spki", format: "der" }).toString("base64")}`
}

/** A new key pair as PEM (PKCS#8): RSA-2048 or Ed25519. */
export const generate = (type: "rsa" | "ed25519"): string =>
  type === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString()
    : generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString()
