// The cluster's shared start-rate buckets (scheduler/Rates.ts): what one stored pair of buckets allows at a time. The
// KV and its compare-and-set are exercised by test/e2e/ClusterShaping.e2e.test.ts on a real nats-server cluster.
import { describe, expect, it } from "vitest"
import * as Rates from "../src/scheduler/Rates.js"

describe("Rates", () => {
  it("starts full, refills at the rate per period and never beyond capacity", () => {
    const l = { perSecond: 4, perHour: 100 }
    expect(Rates.refill(undefined, l, 1000)).toEqual({ s: 4, h: 100, at: 1000 })
    expect(Rates.refill({ s: 0, h: 10, at: 1000 }, l, 1500)).toEqual({ s: 2, h: 10 + 500 * (100 / 3_600_000), at: 1500 })
    expect(Rates.refill({ s: 3, h: 99.99, at: 0 }, l, 60_000)).toEqual({ s: 4, h: 100, at: 60_000 })
  })

  it("counts nothing for a clock that runs behind the writer's", () => {
    expect(Rates.refill({ s: 0.5, at: 2000 }, { perSecond: 1 }, 1000)).toEqual({ s: 0.5, h: undefined, at: 1000 })
  })

  it("waits for the emptier bucket's next token", () => {
    expect(Rates.waitOf({ s: 1, h: 1, at: 0 }, { perSecond: 1, perHour: 1 })).toBe(0)
    expect(Rates.waitOf({ s: 0.5, at: 0 }, { perSecond: 2 })).toBe(250)
    expect(Rates.waitOf({ s: 3, h: 0, at: 0 }, { perSecond: 5, perHour: 3600 })).toBe(1000)
  })

  it("takes a throttle's smaller capacity at once", () => {
    expect(Rates.refill({ s: 50, at: 0 }, { perSecond: 2 }, 0).s).toBe(2)
  })
})
