// LMTP delivery (RFC 2033) to the local mailbox server: LHLO, MAIL, RCPT, DATA, then one reply per accepted recipient.
// Shares the SMTP session and pooling code; must not decide retries. The LMTP server is trusted configuration,
// so TLS is off unless asked for.
import type { ConnectionOptions } from "node:tls"
import type { Route } from "@missive/core"
import type { DeliveryResult, Envelope } from "./Delivery.js"
import { makePool } from "./internal/Pool.js"
import type { TlsMode } from "./internal/Session.js"

export type LmtpDestination = Extract<Route.Destination, { kind: "lmtp" }>

export interface LmtpOptions {
  /** Our name in LHLO. */
  readonly hostname: string
  /** Default "none". */
  readonly tls?: TlsMode | undefined
  readonly tlsOptions?: ConnectionOptions | undefined
  readonly connectTimeout?: number | undefined
  readonly commandTimeout?: number | undefined
  /** Default 4. */
  readonly maxConnections?: number | undefined
  readonly messagesPerConnection?: number | undefined
  /** Default 5 s; 0 closes after every message. */
  readonly idleMs?: number | undefined
}

export interface LmtpClient {
  /** One transaction; never rejects. Each recipient gets its own RCPT or post-DATA reply. */
  send(destination: LmtpDestination, envelope: Envelope, body: Buffer): Promise<DeliveryResult>
  close(): Promise<void>
}

export const makeLmtpClient = (options: LmtpOptions): LmtpClient => {
  const pool = makePool(
    {
      hostname: options.hostname,
      tls: options.tls ?? "none",
      tlsOptions: options.tlsOptions,
      connectTimeout: options.connectTimeout ?? 30_000,
      commandTimeout: options.commandTimeout ?? 300_000,
      lmtp: true
    },
    {
      maxPerDestination: options.maxConnections ?? 4,
      messagesPerConnection: options.messagesPerConnection ?? 100,
      idleMs: options.idleMs ?? 5_000
    }
  )
  return {
    send: (destination, envelope, body) => pool.send(destination.key, [{ host: destination.host, port: destination.port }], envelope, body),
    close: () => pool.close()
  }
}

/** One message over a fresh LMTP session, closed afterwards. */
export const deliverLmtp = async (
  options: LmtpOptions,
  destination: LmtpDestination,
  envelope: Envelope,
  body: Buffer
): Promise<DeliveryResult> => {
  const client = makeLmtpClient({ ...options, idleMs: 0 })
  try {
    return await client.send(destination, envelope, body)
  } finally {
    await client.close()
  }
}
