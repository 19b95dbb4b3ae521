// Retry policy: the backoff arithmetic (doubling, cap, jitter bounds) and the policy hash that stamps every event.
// Pure: the jitter sample is an argument, so every expectation below is exact.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { backoff, defaultRetry, hash, type RetryPolicy } from "../src/Policy.js"

const flat: RetryPolicy = { initialMs: 1000, maxMs: 1_000_000_000, multiplier: 2, jitter: 0, lifetimeMs: 1e9 }

describe("backoff", () => {
  it("doubles with each failure from initialMs", () => {
    expect([1, 2, 3, 4, 10].map((n) => backoff(flat, n, 0.5))).toEqual([1000, 2000, 4000, 8000, 512_000])
  })

  it("treats failures below 1 as the first", () => {
    expect(backoff(flat, 0, 0.5)).toBe(1000)
    expect(backoff(flat, -3, 0.5)).toBe(1000)
  })

  it("grows by the policy's multiplier, constant at 1", () => {
    expect([1, 2, 3].map((n) => backoff({ ...flat, multiplier: 3 }, n, 0.5))).toEqual([1000, 3000, 9000])
    expect([1, 2, 50].map((n) => backoff({ ...flat, multiplier: 1 }, n, 0.5))).toEqual([1000, 1000, 1000])
  })

  it("is capped at maxMs, also for failure counts that overflow the power", () => {
    const capped = { ...flat, maxMs: 5000 }
    expect([3, 4, 5, 100, 5000].map((n) => backoff(capped, n, 0.5))).toEqual([4000, 5000, 5000, 5000, 5000])
  })

  it("jitter spreads the delay over +-jitter: sample 0 is the low end, 0.5 the middle", () => {
    const p = { ...flat, jitter: 0.1 }
    expect(backoff(p, 1, 0)).toBe(900)
    expect(backoff(p, 1, 0.5)).toBe(1000)
    expect(backoff(p, 1, 0.75)).toBe(1050)
    expect(backoff(p, 1, 0.999999)).toBe(1100)
  })

  it("jitter never lifts a delay above maxMs", () => {
    const p = { ...flat, maxMs: 5000, jitter: 0.5 }
    expect(backoff(p, 10, 0.99)).toBe(5000)
    expect(backoff(p, 10, 0)).toBe(2500)
  })

  it("is never below 1 ms", () => {
    expect(backoff({ ...flat, initialMs: 0 }, 1, 0.5)).toBe(1)
    expect(backoff({ ...flat, initialMs: 1, jitter: 1 }, 1, 0)).toBe(1)
  })

  it("stays within [round(base*(1-j)), min(maxMs, round(base*(1+j)))] for any policy, failure count and sample", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000_000 }),
        fc.integer({ min: 0, max: 100_000_000 }),
        fc.constantFrom(1, 1.5, 2, 3, 10),
        fc.double({ min: 0, max: 0.9, noNaN: true }),
        fc.integer({ min: 1, max: 200 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (initialMs, extra, multiplier, jitter, failures, sample) => {
          const p: RetryPolicy = { initialMs, maxMs: initialMs + extra, multiplier, jitter, lifetimeMs: 1 }
          const base = Math.min(p.maxMs, initialMs * Math.pow(multiplier, failures - 1))
          const d = backoff(p, failures, sample)
          expect(Number.isInteger(d)).toBe(true)
          expect(d).toBeGreaterThanOrEqual(Math.max(1, Math.min(p.maxMs, Math.round(base * (1 - jitter)))))
          expect(d).toBeLessThanOrEqual(Math.min(p.maxMs, Math.round(base * (1 + jitter))))
        }
      ),
      { numRuns: 500 }
    )
  })

  it("never shrinks as failures grow, for a fixed sample", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (n, sample) => {
        expect(backoff(defaultRetry, n + 1, sample)).toBeGreaterThanOrEqual(backoff(defaultRetry, n, sample))
      })
    )
  })

  it("defaults follow Postfix: 300s first, 4000s cap, 5 days lifetime", () => {
    expect(defaultRetry).toEqual({ initialMs: 300_000, maxMs: 4_000_000, multiplier: 2, jitter: 0.1, lifetimeMs: 432_000_000 })
  })
})

describe("hash", () => {
  const reverseKeys = (v: unknown): unknown => {
    if (v === null || typeof v !== "object") return v
    if (Array.isArray(v)) return v.map(reverseKeys)
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .reverse()
        .map(([k, x]) => [k, reverseKeys(x)])
    )
  }

  it("is eight lowercase hex digits", () => {
    expect(hash(defaultRetry)).toMatch(/^[0-9a-f]{8}$/)
    expect(hash({})).toMatch(/^[0-9a-f]{8}$/)
  })

  it("is stable across releases: golden values", () => {
    // Stored events carry these hashes; a change here orphans every recorded decision.
    expect(hash(defaultRetry)).toBe("97181f4a")
    expect(hash({})).toBe("5465b825")
    expect(hash(null)).toBe("77074ba4")
    expect(hash([1, "a", { b: true }])).toBe("019b7627")
  })

  it("does not depend on key order, at any depth", () => {
    expect(hash({ a: 1, b: { c: 2, d: [3, { e: 4, f: 5 }] } })).toBe(hash({ b: { d: [3, { f: 5, e: 4 }], c: 2 }, a: 1 }))
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(hash(reverseKeys(v))).toBe(hash(v))
      }),
      { numRuns: 300 }
    )
  })

  it("does depend on values and on array order", () => {
    expect(hash({ ...defaultRetry, jitter: 0.2 })).not.toBe(hash(defaultRetry))
    expect(hash([1, 2])).not.toBe(hash([2, 1]))
    expect(hash({ a: 1 })).not.toBe(hash({ b: 1 }))
    expect(hash({ a: "1" })).not.toBe(hash({ a: 1 }))
  })

  it("treats a key holding undefined as absent, as JSON does", () => {
    expect(hash({ a: 1, b: undefined })).toBe(hash({ a: 1 }))
  })
})
