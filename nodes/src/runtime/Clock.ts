// Time and randomness for the node: the only module that reads the system clock or Math.random.
// Everything else takes a Clock/Random so simulations and what-if runs can substitute virtual ones.

export interface Clock {
  now(): number
}

export interface Random {
  /** Uniform in [0, 1). */
  next(): number
}

export const systemClock: Clock = { now: () => Date.now() }
export const systemRandom: Random = { next: () => Math.random() }

/** A seeded generator (mulberry32) for simulations and reproducible tests. */
export const seededRandom = (seed: number): Random => {
  let a = seed >>> 0
  return {
    next: () => {
      a = (a + 0x6d2b79f5) >>> 0
      let t = a
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }
}

/** A clock a test or simulation moves by hand. */
export const manualClock = (start: number): Clock & { set(t: number): void; advance(ms: number): void } => {
  let t = start
  return { now: () => t, set: (v) => void (t = v), advance: (ms) => void (t += ms) }
}
