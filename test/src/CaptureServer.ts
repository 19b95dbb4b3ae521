// A capture SMTP/LMTP server for tests: accepts mail on 127.0.0.1 (port 0) and keeps every accepted message byte-exact.
// Test-only: no authentication, no relaying rules, listens on loopback (or on the private address a test gives it, e.g.
// inside its own network namespaces); replies are scripted by a Behaviour.
// With `tls: true` it offers STARTTLS with a freshly generated self-signed certificate.
import { generate } from "selfsigned"
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server"

/** A scripted refusal; `text` carries the enhanced code if any: { code: 550, text: "5.1.1 No such user" }. */
export interface Rejection {
  readonly code: number
  readonly text: string
}

export interface Captured {
  readonly from: string
  /** Recipients the server accepted the message for. */
  readonly to: ReadonlyArray<string>
  readonly raw: Buffer
  /** Whether the session was under TLS when the message arrived. */
  readonly secure: boolean
  /** The EHLO/LHLO name the client gave. */
  readonly helo: string
  /** smtp-server's id of the connection that carried the message. */
  readonly connection: string
  /** The client's address (where the session came from). */
  readonly remote: string
}

type Maybe<T> = T | undefined | Promise<T | undefined>

export interface Behaviour {
  readonly onMailFrom?: ((from: string) => Maybe<Rejection>) | undefined
  readonly onRcpt?: ((rcpt: string) => Maybe<Rejection>) | undefined
  /**
   * Decides about a whole message. With LMTP an array gives one answer per accepted recipient (undefined accepts).
   * `message.to` holds every recipient accepted at RCPT. LMTP successes answer "250 2.0.0 <rcpt> delivered".
   */
  readonly onData?: ((message: Captured) => Maybe<Rejection | ReadonlyArray<Rejection | undefined>>) | undefined
}

export interface CaptureOptions extends Behaviour {
  readonly tls?: boolean | undefined
  readonly lmtp?: boolean | undefined
  /** SIZE limit advertised and enforced, bytes. */
  readonly size?: number | undefined
  /** The address to listen on (default 127.0.0.1): only a test-owned private address, never 0.0.0.0. */
  readonly host?: string | undefined
  /** Default 0: any free port. */
  readonly port?: number | undefined
  /** The STARTTLS key pair (PEM) instead of the generated self-signed one (implies `tls`). */
  readonly certificate?: { readonly key: string; readonly cert: string } | undefined
}

export interface CaptureServer {
  readonly host: string
  readonly port: number
  /** Accepted messages, in arrival order. */
  readonly messages: Captured[]
  /** Connections accepted so far. */
  readonly connections: number
  /** Connections open now. */
  readonly open: number
  setBehaviour(behaviour: Behaviour): void
  close(): Promise<void>
}

let certificate: Promise<{ key: string; cert: string }> | undefined

/** One self-signed certificate per test process: RSA key generation is slow. */
const selfSigned = (): Promise<{ key: string; cert: string }> =>
  (certificate ??= generate([{ name: "commonName", value: "capture.test" }], { keySize: 2048 }).then((p) => ({
    key: p.private,
    cert: p.cert
  })))

const refusal = (r: Rejection): Error & { responseCode: number } => Object.assign(new Error(r.text), { responseCode: r.code })

export const startCapture = async (options: CaptureOptions = {}): Promise<CaptureServer> => {
  let behaviour: Behaviour = { onMailFrom: options.onMailFrom, onRcpt: options.onRcpt, onData: options.onData }
  const messages: Captured[] = []
  let connections = 0
  let open = 0
  const tls = options.certificate ?? (options.tls ? await selfSigned() : undefined)
  const lmtp = options.lmtp ?? false
  const host = options.host ?? "127.0.0.1"

  const serverOptions: SMTPServerOptions = {
    name: "capture.test",
    lmtp,
    logger: false,
    authOptional: true,
    disabledCommands: ["AUTH"],
    closeTimeout: 500,
    ...(options.size ? { size: options.size } : {}),
    ...(tls ? { key: tls.key, cert: tls.cert } : { hideSTARTTLS: true }),
    onConnect(_session, callback) {
      connections++
      open++
      callback()
    },
    onClose() {
      open--
    },
    onMailFrom(address, _session, callback) {
      Promise.resolve(behaviour.onMailFrom?.(address.address)).then((r) => callback(r ? refusal(r) : null), callback)
    },
    onRcptTo(address, _session, callback) {
      Promise.resolve(behaviour.onRcpt?.(address.address)).then((r) => callback(r ? refusal(r) : null), callback)
    },
    onData(stream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = []
      stream.on("data", (c: Buffer) => chunks.push(c))
      stream.on("end", () => {
        if (stream.sizeExceeded) return callback(refusal({ code: 552, text: "5.3.4 Message too big" }))
        const base: Captured = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          secure: session.secure,
          helo: session.hostNameAppearsAs,
          connection: session.id,
          remote: session.remoteAddress
        }
        Promise.resolve(behaviour.onData?.(base)).then((answer) => {
          if (answer === undefined) {
            messages.push(base)
            return callback(null, lmtp ? base.to.map((r) => `2.0.0 <${r}> delivered`) : "2.0.0 OK captured")
          }
          if (!Array.isArray(answer)) return callback(refusal(answer as Rejection))
          const answers = base.to.map((_, i) => (answer as ReadonlyArray<Rejection | undefined>)[i])
          const accepted = base.to.filter((_, i) => answers[i] === undefined)
          if (accepted.length > 0) messages.push({ ...base, to: accepted })
          return callback(
            null,
            answers.map((a, i) => (a ? refusal(a) : `2.0.0 <${base.to[i]}> delivered`))
          )
        }, callback)
      })
    }
  }

  const server = new SMTPServer(serverOptions)
  server.on("error", () => undefined) // client resets are expected in tests that drop connections
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject)
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const address = server.server.address()
  if (address === null || typeof address === "string") throw new Error("capture server has no TCP address")

  return {
    host,
    port: address.port,
    messages,
    get connections() {
      return connections
    },
    get open() {
      return open
    },
    setBehaviour: (b) => {
      behaviour = b
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
