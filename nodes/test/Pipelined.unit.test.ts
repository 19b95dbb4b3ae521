// The pipelined transaction's wire forms: dot-stuffing (RFC 5321 §4.5.2) and the command group's parameters.
import { describe, expect, it } from "vitest"
import { commands, dotStuffed, type Wire } from "../src/delivery/internal/Pipelined.js"

const wire = (extensions: ReadonlyArray<string>): Wire => ({
  _supportedExtensions: extensions,
  _maxAllowedSize: 0,
  _responseActions: [],
  _socket: { write: () => true, cork: () => undefined, uncork: () => undefined },
  close: () => undefined
})

const stuffed = (text: string): string => Buffer.concat(dotStuffed(Buffer.from(text, "latin1"))).toString("latin1")

describe("Pipelined", () => {
  it("doubles the dot that starts a line, the first line's too, and nothing else", () => {
    expect(stuffed(".a\r\nb.c\r\n..d\r\n.\r\ne\r\n")).toBe("..a\r\nb.c\r\n...d\r\n..\r\ne\r\n")
    expect(stuffed("plain\r\nbody\r\n")).toBe("plain\r\nbody\r\n")
    expect(stuffed("\r\n.\r\n")).toBe("\r\n..\r\n")
  })

  it("ends the data with CRLF when the body does not, and sends nothing for an empty body", () => {
    expect(stuffed("no end")).toBe("no end\r\n")
    expect(stuffed("x\r\n.")).toBe("x\r\n..\r\n")
    expect(stuffed("\r")).toBe("\r\r\n")
    expect(dotStuffed(Buffer.alloc(0))).toEqual([])
  })

  it("hands the body over in pieces, not a copy", () => {
    const body = Buffer.from("a\r\n.b\r\n")
    const parts = dotStuffed(body)
    expect(parts.every((p) => p.length === 1 || p.buffer === body.buffer)).toBe(true)
  })

  it("groups MAIL, every RCPT and DATA with the parameters the server offered and the message needs", () => {
    const body = Buffer.from("é\r\n", "utf8")
    expect(
      commands(wire(["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8"]), "ä@x.test", ["b@y.test", "c@y.test"], body, true).toString()
    ).toBe("MAIL FROM:<ä@x.test> SMTPUTF8 BODY=8BITMIME SIZE=4\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n")
    expect(commands(wire(["PIPELINING"]), "", ["b@y.test"], body, true).toString()).toBe("MAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
  })
})
