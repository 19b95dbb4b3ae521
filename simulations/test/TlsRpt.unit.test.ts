// The RFC 8460 daily report from recorded attempts: a hand-built log of one day (MTA-STS, DANE and plain domains,
// failures of several kinds, attempts outside the day) against a hand-computed report.
import type { Message, Trace } from "@missive/core"
import { EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as TlsRpt from "../src/replay/TlsRpt.js"

const DAY = Date.parse("2026-11-29T00:00:00Z")
const meta = (at: number) => ({ v: 1, at, node: "n1", policy: "p" })
const tls = (policy: Trace.TlsPolicySource, verified: boolean, reason?: string): Trace.TlsOutcome => ({
  policy,
  tls: true,
  version: "TLSv1.3",
  cipher: "TLS_AES_256_GCM_SHA384",
  verified,
  ...(reason ? { reason } : {})
})
const ok = (at: number, rcpt: string, attempt: number, trace: Trace.Trace): Message.Event => ({
  ...meta(at),
  type: "AttemptSucceeded",
  attempt,
  rcpts: [rcpt],
  host: "x",
  reply: { code: 250, text: "OK" },
  trace
})
const deferred = (at: number, rcpt: string, attempt: number, trace: Trace.Trace): Message.Event => ({
  ...meta(at),
  type: "AttemptDeferred",
  attempt,
  rcpts: [rcpt],
  host: "x",
  reply: { code: 451, enhanced: "4.7.5", text: "TLS policy not satisfied" },
  nextAttemptAt: at + 60_000,
  trace
})

describe("TLS-RPT", () => {
  it("counts sessions per policy domain and type, and each failure with its result type", async () => {
    const store = EventStore.makeMemory()
    const h = 3_600_000
    const sts: Trace.Trace = { hops: [{ hop: "192.0.2.1:25", name: "mx.sts.test", outcome: "connected" }], tls: tls("mta-sts", true) }
    const stsMismatch: Trace.Trace = {
      hops: [
        {
          hop: "192.0.2.2:25",
          name: "mx.sts.test",
          outcome: "tls-failed",
          detail: "certificate not verified: ERR_TLS_CERT_ALTNAME_INVALID"
        }
      ],
      tls: tls("mta-sts", false, "ERR_TLS_CERT_ALTNAME_INVALID")
    }
    const daneBogus: Trace.Trace = {
      hops: [
        {
          hop: "192.0.2.3:25",
          name: "mx.dane.test",
          outcome: "policy-excluded",
          detail: "TLSA lookup failed (SERVFAIL): not delivered to this host"
        }
      ]
    }
    const daneOk: Trace.Trace = {
      hops: [
        { hop: "192.0.2.4:25", name: "mx1.dane.test", outcome: "tls-failed", detail: "no TLSA record matches the certificate chain" },
        { hop: "[2001:db8::5]:25", name: "mx2.dane.test", outcome: "connected" }
      ],
      tls: tls("dane", true)
    }
    const plain: Trace.Trace = {
      hops: [{ hop: "192.0.2.6:25", outcome: "reused" }],
      tls: tls("opportunistic", false, "DEPTH_ZERO_SELF_SIGNED_CERT")
    }
    await store.append("message-A", 0, [ok(DAY + 1 * h, "a@sts.test", 1, sts)])
    await store.append("message-B", 0, [deferred(DAY + 2 * h, "b@sts.test", 1, stsMismatch), ok(DAY + 3 * h, "b@sts.test", 2, sts)])
    // one attempt, two replies: two events sharing one trace, one session
    await store.append("message-C", 0, [
      deferred(DAY + 4 * h, "c@dane.test", 1, daneBogus),
      deferred(DAY + 4 * h, "c2@dane.test", 1, daneBogus)
    ])
    await store.append("message-D", 0, [ok(DAY + 5 * h, "d@dane.test", 1, daneOk)])
    await store.append("message-E", 0, [ok(DAY + 6 * h, "e@plain.test", 1, plain)])
    // outside the day
    await store.append("message-F", 0, [ok(DAY + 25 * h, "f@sts.test", 1, sts), ok(DAY - h, "f@sts.test", 2, sts)])

    const r = await TlsRpt.build(store, { day: "2026-11-29", organization: "mx.missive.test", contact: "postmaster@missive.test" })
    expect(r["date-range"]).toEqual({ "start-datetime": "2026-11-29T00:00:00.000Z", "end-datetime": "2026-11-29T23:59:59.000Z" })
    expect(r.policies).toEqual([
      {
        policy: { "policy-type": "tlsa", "policy-domain": "dane.test", "mx-host": ["mx.dane.test", "mx1.dane.test", "mx2.dane.test"] },
        summary: { "total-successful-session-count": 1, "total-failure-session-count": 2 },
        "failure-details": [
          {
            "result-type": "dnssec-invalid",
            "receiving-mx-hostname": "mx.dane.test",
            "receiving-ip": "192.0.2.3",
            "failed-session-count": 1,
            "failure-reason-code": "TLSA lookup failed (SERVFAIL): not delivered to this host"
          },
          {
            "result-type": "validation-failure",
            "receiving-mx-hostname": "mx1.dane.test",
            "receiving-ip": "192.0.2.4",
            "failed-session-count": 1,
            "failure-reason-code": "no TLSA record matches the certificate chain"
          }
        ]
      },
      {
        policy: { "policy-type": "no-policy-found", "policy-domain": "plain.test" },
        summary: { "total-successful-session-count": 1, "total-failure-session-count": 0 },
        "failure-details": []
      },
      {
        policy: { "policy-type": "sts", "policy-domain": "sts.test", "mx-host": ["mx.sts.test"] },
        summary: { "total-successful-session-count": 2, "total-failure-session-count": 1 },
        "failure-details": [
          {
            "result-type": "certificate-host-mismatch",
            "receiving-mx-hostname": "mx.sts.test",
            "receiving-ip": "192.0.2.2",
            "failed-session-count": 1,
            "failure-reason-code": "certificate not verified: ERR_TLS_CERT_ALTNAME_INVALID"
          }
        ]
      }
    ])
  })
})
