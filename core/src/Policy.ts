// Delivery policy: the retry schedule and the queue lifetime, and the pure backoff arithmetic.
// No clock and no randomness: the caller passes `now` and a jitter sample in [0, 1).
import { fnv1a32 } from "./Hash.js"

export interface RetryPolicy {
  /** First retry delay, ms (Postfix minimal_backoff_time: 300s). */
  readonly initialMs: number
  /** Cap on a single delay, ms (Postfix maximal_backoff_time: 4000s). */
  readonly maxMs: number
  /** Growth factor between attempts (2 = doubling). */
  readonly multiplier: number
  /** Jitter as a fraction of the delay (0.1 = up to +-10%). */
  readonly jitter: number
  /** Give up after this long in the queue, ms (Postfix maximal_queue_lifetime: 5d). */
  readonly lifetimeMs: number
}

export const defaultRetry: RetryPolicy = {
  initialMs: 5 * 60_000,
  maxMs: 4000_000,
  multiplier: 2,
  jitter: 0.1,
  lifetimeMs: 5 * 24 * 3600_000
}

/** Delay before the attempt that follows the `failures`-th deferral (1-based). Never above `maxMs`, never below 1. */
export const backoff = (policy: RetryPolicy, failures: number, jitterSample: number): number => {
  const base = Math.min(policy.maxMs, policy.initialMs * Math.pow(policy.multiplier, Math.max(0, failures - 1)))
  const j = 1 + policy.jitter * (2 * jitterSample - 1)
  // The cap applies after the jitter: maxMs bounds a single delay, as Postfix's maximal_backoff_time does.
  return Math.max(1, Math.min(policy.maxMs, Math.round(base * j)))
}

/** Stable short hash of any JSON-able policy (FNV-1a, hex): which configuration made a decision. */
export const hash = (policy: unknown): string => {
  return fnv1a32(stableStringify(policy)).toString(16).padStart(8, "0")
}

const stableStringify = (v: unknown): string => {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null"
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`
  const o = v as Record<string, unknown>
  // Keys holding undefined are absent, as in JSON: `{ a: 1, b: undefined }` hashes like `{ a: 1 }`.
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(",")}}`
}
