// Egress pools: source addresses grouped in pools, each with a weight and the EHLO name that goes with it; a
// recipient domain (or the default) picks a pool, and a message picks a member by weight from its id, so all the
// attempts of one message leave from the same address. Must not open connections (delivery binds to what it says).
import { Hash } from "@missive/core"
import type { Egress } from "./SmtpClient.js"

export interface Member extends Egress {
  readonly weight: number
}

export interface EgressOptions {
  readonly pools: Readonly<Record<string, ReadonlyArray<Member>>>
  /** Pool for recipient domains not listed (null: the system's choice of address and `hostname`). */
  readonly default: string | null
  /** Recipient domain -> pool. */
  readonly domains: Readonly<Record<string, string>>
}

/** A stable draw in [0, 1) per message from its id (core's FNV-1a), no randomness needed. */
const draw = (id: string): number => Hash.fnv1a32(id) / 0x1_0000_0000

/** The member of `pool` for message `id`, by weight. */
export const pick = (pool: ReadonlyArray<Member>, id: string): Egress | undefined => {
  const total = pool.reduce((n, m) => n + m.weight, 0)
  if (total <= 0) return undefined
  let x = draw(id) * total
  for (const m of pool) {
    if (x < m.weight) return { address: m.address, ehlo: m.ehlo }
    x -= m.weight
  }
  const last = pool[pool.length - 1]
  return last ? { address: last.address, ehlo: last.ehlo } : undefined
}

/** The egress of a message `id` to recipient `domain`, or undefined for none. */
export const choose = (o: EgressOptions, domain: string, id: string): Egress | undefined => {
  const name = o.domains[domain.toLowerCase()] ?? o.default
  const pool = name === null ? undefined : o.pools[name]
  return pool ? pick(pool, id) : undefined
}
