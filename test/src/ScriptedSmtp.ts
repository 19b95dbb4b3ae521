// A scripted SMTP server for client tests, line by line on a raw socket (no smtp-server in between): it greets,
// answers EHLO, gives 354 to DATA and reads the data to the final dot, and lets the test choose every other reply —
// including none at all ("hang up": the socket is destroyed without a word). Listens on 127.0.0.1 only.
import { createServer, type Server } from "node:net"

export interface Script {
  /** The EHLO reply, lines without CR LF (default one line "250 scripted.test"). */
  readonly ehlo?: ReadonlyArray<string> | undefined
  /** The reply to a command other than EHLO, DATA and QUIT (undefined: "250 2.0.0 OK"). */
  readonly command?: ((line: string, connection: number) => string | "hang up" | undefined) | undefined
  /** The reply to DATA when it is not "354 go ahead" (undefined: 354, and the data is read). */
  readonly dataCommand?: ((connection: number) => string | undefined) | undefined
  /** The reply after the final dot, lines without CR LF (default "250 2.0.0 queued"). */
  readonly data?: ((data: string, connection: number) => ReadonlyArray<string> | "hang up") | undefined
}

export interface Scripted {
  readonly port: number
  /** Every command line received, as "<connection number> <VERB>" (connections counted from 1). */
  readonly lines: string[]
  /**
   * What each read from a client carried, as "<connection> <VERB> <VERB>…", "." for a final dot and "data" for message
   * lines: how the client grouped its writes (PIPELINING).
   */
  readonly reads: string[]
  close(): Promise<void>
}

export const startScripted = async (script: Script = {}): Promise<Scripted> => {
  const lines: string[] = []
  const reads: string[] = []
  let connections = 0
  const server: Server = createServer((socket) => {
    const connection = ++connections
    const say = (reply: ReadonlyArray<string>): void => void socket.write(reply.map((l) => `${l}\r\n`).join(""))
    let data: string | undefined
    let buf = ""
    socket.on("error", () => undefined)
    say(["220 scripted.test ESMTP"])
    socket.on("data", (chunk: Buffer) => {
      buf += chunk.toString("latin1")
      const read: string[] = []
      let i: number
      while (!socket.destroyed && (i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 2)
        if (data !== undefined) {
          if (line !== ".") {
            if (read[read.length - 1] !== "data") read.push("data")
            data += `${line}\r\n`
            continue
          }
          read.push(".")
          const reply = script.data?.(data, connection) ?? ["250 2.0.0 queued"]
          data = undefined
          if (reply === "hang up") socket.destroy()
          else say(reply)
          continue
        }
        const verb = line.split(/[: ]/)[0]?.toUpperCase() ?? ""
        lines.push(`${connection} ${verb}`)
        read.push(verb)
        if (verb === "EHLO") say(script.ehlo ?? ["250 scripted.test"])
        else if (verb === "DATA" && script.dataCommand?.(connection) !== undefined) say([script.dataCommand(connection)!])
        else if (verb === "DATA") {
          data = ""
          say(["354 go ahead"])
        } else if (verb === "QUIT") socket.end("221 bye\r\n")
        else {
          const reply = script.command?.(line, connection) ?? "250 2.0.0 OK"
          if (reply === "hang up") socket.destroy()
          else say([reply])
        }
      }
      if (read.length) reads.push(`${connection} ${read.join(" ")}`)
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as { port: number }).port,
    lines,
    reads,
    close: () => new Promise<void>((r) => server.close(() => r()))
  }
}
