// The delivery role's front door: sends one attempt to its destination by kind (SMTP pool, LMTP, Maildir)
// and reports one reply per recipient. Must not decide retries or bounces (the message decider does).
import type { Route } from "@missive/core"
import type { Config } from "../config/Config.js"
import type { DeliveryResult } from "./Delivery.js"
import { makeLmtpClient } from "./Lmtp.js"
import { makeMaildir } from "./Maildir.js"
import { makeSmtpPool } from "./SmtpClient.js"

export interface Deliverer {
  deliver(
    destination: Route.Destination,
    envelope: { from: string; to: ReadonlyArray<string> },
    body: Buffer,
    id: string
  ): Promise<DeliveryResult>
  close(): Promise<void>
}

export const makeDeliverer = (config: Config): Deliverer => {
  const smtp = makeSmtpPool({
    hostname: config.hostname,
    tls: config.delivery.tls,
    connectTimeout: config.delivery.connect_timeout,
    commandTimeout: config.delivery.command_timeout,
    maxPerDestination: config.delivery.concurrency_per_destination,
    messagesPerConnection: config.delivery.messages_per_connection,
    idleMs: config.delivery.reuse_connections ? 5_000 : 0
  })
  const lmtp = makeLmtpClient({
    hostname: config.hostname,
    connectTimeout: config.delivery.connect_timeout,
    commandTimeout: config.delivery.command_timeout
  })
  const maildir = makeMaildir({ root: config.local.maildir, hostname: config.hostname })
  return {
    deliver: async (destination, envelope, body) => {
      switch (destination.kind) {
        case "smtp":
          return smtp.send(destination, envelope, body)
        case "lmtp":
          return lmtp.send(destination, envelope, body)
        case "maildir":
          return maildir.deliver(envelope, body)
        case "unroutable":
          return { host: "none", results: envelope.to.map((rcpt) => ({ rcpt, reply: destination.reply })) }
      }
    },
    close: async () => {
      await Promise.all([smtp.close(), lmtp.close()])
    }
  }
}
