// Seeded randomness for the simulated world: a PRNG stream per component, and keyed draws (a hash of the seed and a
// key such as message tag + recipient + attempt) for decisions that must not depend on arrival order under concurrency.
// The only source of randomness in simulations/; it never reads Math.random or the clock.
import { Hash } from "@missive/core"
import { Clock } from "@missive/node"

export interface Stream {
  /** Uniform in [0, 1). */
  next(): number
  /** An integer in [min, max]. */
  int(min: number, max: number): number
  /** An index into `weights`, drawn in proportion to them. */
  weighted(weights: ReadonlyArray<number>): number
}

/** 32-bit FNV-1a of a string, then murmur3's finaliser so nearby keys spread. */
export const hash32 = (text: string): number => {
  let h = Hash.fnv1a32(text)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A uniform draw in [0, 1) that depends only on the seed and the key parts. */
export const keyed = (seed: number, ...key: ReadonlyArray<string | number>): number => {
  // two rounds of mulberry32 from the hashed key, so the low bits of the hash do not show through
  const s = stream(hash32(`${seed}\u0000${key.join("\u0000")}`))
  s.next()
  return s.next()
}

/** The node's seeded generator (mulberry32) with draws on top: the seed fixes the whole sequence. */
export const stream = (seed: number): Stream => {
  const next = Clock.seededRandom(seed).next
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    weighted: (weights) => pick(weights, next())
  }
}

/** A component's own stream: the run seed and the component's name. */
export const forComponent = (seed: number, name: string): Stream => stream(hash32(`${seed}\u0000${name}`))

/** The index `u` (uniform in [0, 1)) falls on when [0, 1) is cut in proportion to `weights`. */
export const pick = (weights: ReadonlyArray<number>, u: number): number => {
  const total = weights.reduce((a, b) => a + b, 0)
  let x = u * total
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!
    if (x < 0) return i
  }
  return weights.length - 1
}
