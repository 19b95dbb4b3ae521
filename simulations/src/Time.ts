// Scenario time for the simulated world: milliseconds since the run began, from a monotonic clock.
// The only module in simulations/ that reads a clock; everything else takes a `Now`.

export type Now = () => number

/** A clock that reads 0 now (and again after `reset`) and counts milliseconds from there (monotonic, fractional). */
export const startClock = (): Now & { reset(): void } => {
  let t0 = performance.now()
  return Object.assign(() => performance.now() - t0, { reset: () => void (t0 = performance.now()) })
}

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, Math.max(0, ms)))
