// The table of open SMTP sessions across all ingress listeners, and the connection limits
// (total, per client IP) checked against it. Counts only; never touches a socket.

export interface ConnectionLimits {
  readonly maxConnections: number
  readonly maxConnectionsPerIp: number
}

export type Admission = { readonly admitted: true } | { readonly admitted: false; readonly reason: "total" | "per-ip" }

export class Connections {
  private readonly sessions = new Map<string, string>()
  private readonly perIp = new Map<string, number>()

  constructor(private readonly limits: ConnectionLimits) {}

  /** Admits and records the session, or says which limit it would break. */
  admit(sessionId: string, ip: string): Admission {
    if (this.sessions.size >= this.limits.maxConnections) return { admitted: false, reason: "total" }
    const fromIp = this.perIp.get(ip) ?? 0
    if (fromIp >= this.limits.maxConnectionsPerIp) return { admitted: false, reason: "per-ip" }
    this.sessions.set(sessionId, ip)
    this.perIp.set(ip, fromIp + 1)
    return { admitted: true }
  }

  /** Forgets the session; a session that was never admitted is ignored. */
  release(sessionId: string): void {
    const ip = this.sessions.get(sessionId)
    if (ip === undefined) return
    this.sessions.delete(sessionId)
    const left = (this.perIp.get(ip) ?? 1) - 1
    if (left > 0) this.perIp.set(ip, left)
    else this.perIp.delete(ip)
  }

  get size(): number {
    return this.sessions.size
  }
}
