// Time and randomness for the node: the only module that reads the system clock or Math.random.
// Everything else takes a Clock/Random so simulations and what-if runs can substitute virtual ones. Each is also an
// Effect service (`ClockService`, `RandomService`) with its layers; the composition root reads them once and hands
// the plain values to the hot path, which never runs an Effect per call.
import { Context, Layer } from "effect"

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

/** The node's clock, as a service: `layerSystem` in a running node, `layer(clock)` for a fixed or virtual one. */
export class ClockService extends Context.Service<ClockService, Clock>()("missive/Clock") {}

export const layerSystem: Layer.Layer<ClockService> = Layer.succeed(ClockService, systemClock)
export const layer = (clock: Clock): Layer.Layer<ClockService> => Layer.succeed(ClockService, clock)

/** The node's random source, as a service: `layerRandomSystem`, or `layerRandom(seededRandom(seed))` in tests. */
export class RandomService extends Context.Service<RandomService, Random>()("missive/Random") {}

export const layerRandomSystem: Layer.Layer<RandomService> = Layer.succeed(RandomService, systemRandom)
export const layerRandom = (random: Random): Layer.Layer<RandomService> => Layer.succeed(RandomService, random)
