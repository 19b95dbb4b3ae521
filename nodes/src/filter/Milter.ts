// The milter client (the Sendmail/Postfix milter protocol, version 6), so that existing milters work unchanged. At
// the end of DATA it holds one conversation per message with the milter: option negotiation, connect, helo, mail,
// each rcpt, the header fields, end of headers, the body in chunks, end of message; then it applies what the milter
// asked for: accept, reject, tempfail, discard (held in quarantine here), a reply of its own, header additions and
// changes. The whole conversation has one deadline. Offered actions are headers and quarantine only: a milter may not
// change the body, the sender or the recipients here. The envelope steps run at the end of DATA, so a milter that
// refuses at MAIL or RCPT is answered then (for the whole message), not at that command.
// Security: every packet is length-checked (at most 1 MiB); a milter that answers garbage, too much, or not in time
// gives the scanner failure rule (Scan.ts); its words are sanitised before they reach a reply.
import { connect, type Socket } from "node:net"
import { Reply } from "@missive/core"
import { printable } from "./Clamd.js"
import type { Filter, Verdict } from "./Filter.js"
import * as Header from "./Header.js"
import * as Scan from "./Scan.js"

export interface MilterOptions {
  readonly host: string
  readonly port: number
  readonly timeoutMs: number
  readonly hostname: string
}

export interface Envelope {
  readonly ip: string
  readonly helo: string
  readonly sender: string
  readonly recipients: ReadonlyArray<string>
  readonly user?: string | undefined
  readonly queueId: string
}

/** Header edits a milter asked for, in order. */
export type Edit =
  | { readonly _tag: "Add"; readonly name: string; readonly value: string }
  | { readonly _tag: "Insert"; readonly index: number; readonly name: string; readonly value: string }
  | { readonly _tag: "Change"; readonly index: number; readonly name: string; readonly value: string }

export type MilterOutcome =
  | {
      readonly _tag: "Decided"
      readonly action: "accept" | "reject" | "tempfail" | "discard" | "quarantine"
      /** The milter's own reply (SMFIR_REPLYCODE), when it gave one. */
      readonly reply: Reply.Reply | undefined
      /** The step at which it decided ("eom" when it let the message through to the end). */
      readonly step: string
      readonly edits: ReadonlyArray<Edit>
      readonly ignored: ReadonlyArray<string>
    }
  | { readonly _tag: "Failed"; readonly reason: "connect" | "timeout" | "closed" | "garbage"; readonly detail: string }

// Commands (MTA → milter) and replies (milter → MTA), from libmilter's mfdef.h.
const C = {
  OPTNEG: "O",
  MACRO: "D",
  CONNECT: "C",
  HELO: "H",
  MAIL: "M",
  RCPT: "R",
  DATA: "T",
  HEADER: "L",
  EOH: "N",
  BODY: "B",
  EOB: "E",
  QUIT: "Q"
}
const VERSION = 6
/** SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE: the only modifications allowed. */
const ACTIONS = 0x01 | 0x10 | 0x20
/** Every SMFIP_ step and no-reply flag the milter may pick, except SMFIP_RCPT_REJ (rejected recipients are not sent). */
const PROTOCOL = 0x1fffff & ~0x800
const P = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NODATA: 0x200,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000
}
const MAX_PACKET = 1 << 20
const BODY_CHUNK = 65535

const cstr = (...parts: ReadonlyArray<string>): Buffer => Buffer.from(parts.map((p) => `${p}\0`).join(""), "latin1")

const packet = (cmd: string, data: Buffer = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(data.length + 1)
  head.write(cmd, 4, "latin1")
  return Buffer.concat([head, data])
}

class Failure extends Error {
  constructor(
    readonly reason: "connect" | "timeout" | "closed" | "garbage",
    detail: string
  ) {
    super(detail)
  }
}

/** A framed connection: send packets, await the next one; every failure rejects the pending read. */
class Conversation {
  private buffer = Buffer.alloc(0)
  private readonly queue: Array<{ cmd: string; data: Buffer }> = []
  private waiter: { ok: (p: { cmd: string; data: Buffer }) => void; fail: (e: Failure) => void } | undefined
  private failure: Failure | undefined

  constructor(private readonly socket: Socket) {
    socket.on("data", (b: Buffer) => this.onData(b))
    socket.once("error", (e: NodeJS.ErrnoException) => this.fail(new Failure("closed", e.code ?? e.message)))
    socket.once("close", () => this.fail(new Failure("closed", "the milter closed the connection")))
  }

  fail(e: Failure): void {
    this.failure ??= e
    const w = this.waiter
    this.waiter = undefined
    w?.fail(this.failure)
  }

  private onData(b: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, b])
    while (this.buffer.length >= 4) {
      const len = this.buffer.readUInt32BE(0)
      if (len < 1 || len > MAX_PACKET) return this.fail(new Failure("garbage", `a packet of ${len} bytes`))
      if (this.buffer.length < 4 + len) return
      const cmd = String.fromCharCode(this.buffer[4]!)
      const data = this.buffer.subarray(5, 4 + len)
      this.buffer = this.buffer.subarray(4 + len)
      const w = this.waiter
      if (w) {
        this.waiter = undefined
        w.ok({ cmd, data })
      } else this.queue.push({ cmd, data })
    }
  }

  send(cmd: string, data?: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(packet(cmd, data))
  }

  next(): Promise<{ cmd: string; data: Buffer }> {
    const queued = this.queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((ok, fail) => (this.waiter = { ok, fail }))
  }
}

/** A milter's SMFIR_REPLYCODE text ("550 5.7.1 Go away") as a reply of the right class, or undefined. */
export const replyCodeOf = (data: Buffer): Reply.Reply | undefined => {
  const text = printable(data.toString("latin1").replace(/\0+$/, ""), 300)
  const r = Reply.parse(text)
  return /^[45]\d\d /.test(text) ? { ...r, text: r.text || "Refused by milter" } : undefined
}

/** One conversation with the milter about one message. Never rejects: every failure is an outcome. */
export const check = async (opts: MilterOptions, envelope: Envelope, message: Buffer): Promise<MilterOutcome> => {
  const socket = connect({ host: opts.host, port: opts.port })
  const conv = new Conversation(socket)
  const timer = setTimeout(() => {
    conv.fail(new Failure("timeout", `no complete conversation within ${opts.timeoutMs} ms`))
    socket.destroy()
  }, opts.timeoutMs)
  try {
    await new Promise<void>((ok, fail) => {
      socket.once("connect", () => ok())
      socket.once("error", (e: NodeJS.ErrnoException) => fail(new Failure("connect", e.code ?? e.message)))
      socket.once("close", () => fail(new Failure("timeout", `not connected within ${opts.timeoutMs} ms`)))
    })
    const optneg = Buffer.alloc(12)
    optneg.writeUInt32BE(VERSION, 0)
    optneg.writeUInt32BE(ACTIONS, 4)
    optneg.writeUInt32BE(PROTOCOL, 8)
    conv.send(C.OPTNEG, optneg)
    const neg = await conv.next()
    if (neg.cmd !== "O" || neg.data.length < 12) throw new Failure("garbage", `option negotiation answered with ${JSON.stringify(neg.cmd)}`)
    const version = neg.data.readUInt32BE(0)
    if (version < 2 || version > VERSION) throw new Failure("garbage", `milter protocol version ${version}`)
    const flags = neg.data.readUInt32BE(8)
    const has = (f: number) => (flags & f) !== 0

    const edits: Array<Edit> = []
    const ignored: Array<string> = []
    let reply: Reply.Reply | undefined
    let quarantined = false
    type Step =
      { readonly done: true; readonly action: "accept" | "reject" | "tempfail" | "discard" | "quarantine" } | { readonly done: false }
    /** Reads replies until a decision or "continue"; modification packets are collected on the way (eom). */
    const answer = async (): Promise<Step & { skip?: boolean }> => {
      for (;;) {
        const p = await conv.next()
        switch (p.cmd) {
          case "c":
            return { done: false }
          case "s":
            return { done: false, skip: true }
          case "a":
            return { done: true, action: "accept" }
          case "r":
            return { done: true, action: "reject" }
          case "t":
            return { done: true, action: "tempfail" }
          case "d":
            return { done: true, action: "discard" }
          case "y": {
            reply = replyCodeOf(p.data)
            if (reply === undefined)
              throw new Failure(
                "garbage",
                `a reply code that is not 4xx or 5xx: ${JSON.stringify(printable(p.data.toString("latin1"), 60))}`
              )
            return { done: true, action: reply.code >= 500 ? "reject" : "tempfail" }
          }
          case "p":
            continue
          case "h":
          case "i":
          case "m": {
            const withIndex = p.cmd !== "h"
            const index = withIndex ? p.data.readUInt32BE(0) : 0
            const parts = p.data
              .subarray(withIndex ? 4 : 0)
              .toString("latin1")
              .split("\0")
            const name = parts[0] ?? ""
            if (!/^[A-Za-z0-9-]{1,64}$/.test(name)) throw new Failure("garbage", `a header name ${JSON.stringify(printable(name, 60))}`)
            const value = printable(parts[1] ?? "", 998)
            edits.push(p.cmd === "h" ? { _tag: "Add", name, value } : { _tag: p.cmd === "i" ? "Insert" : "Change", index, name, value })
            continue
          }
          case "q":
            // SMFIR_QUARANTINE: a modification like the header ones; the milter's decision still follows.
            quarantined = true
            continue
          default:
            if ("+-2be".includes(p.cmd)) {
              ignored.push(`modification ${JSON.stringify(p.cmd)} not negotiated`)
              continue
            }
            throw new Failure("garbage", `an unknown reply ${JSON.stringify(printable(p.cmd, 4))}`)
        }
      }
    }
    const decided = (action: Step & { done: true }, step: string): MilterOutcome => ({
      _tag: "Decided",
      action: quarantined && action.action === "accept" ? "quarantine" : action.action,
      reply,
      step,
      edits,
      ignored
    })
    /** Sends one step unless the milter opted out of it; waits for its reply unless it said it sends none. */
    const step = async (
      name: string,
      skipFlag: number,
      noReplyFlag: number,
      cmd: string,
      data?: Buffer
    ): Promise<MilterOutcome | undefined> => {
      if (has(skipFlag)) return undefined
      conv.send(cmd, data)
      if (has(noReplyFlag)) return undefined
      const a = await answer()
      return a.done ? decided(a, name) : undefined
    }
    const family = envelope.ip.includes(":") ? "6" : "4"
    const port = Buffer.alloc(2)
    conv.send(C.MACRO, Buffer.concat([Buffer.from("C"), cstr("j", opts.hostname, "{daemon_name}", "missive", "_", `[${envelope.ip}]`)]))
    let done: MilterOutcome | undefined = await step(
      "connect",
      P.NOCONNECT,
      P.NR_CONN,
      C.CONNECT,
      Buffer.concat([cstr(`[${envelope.ip}]`), Buffer.from(family), port, cstr(envelope.ip)])
    )
    if (done) return done
    done = await step("helo", P.NOHELO, P.NR_HELO, C.HELO, cstr(envelope.helo || "unknown"))
    if (done) return done
    const mailMacros = ["{i}", envelope.queueId, ...(envelope.user ? ["{auth_authen}", envelope.user] : [])]
    conv.send(C.MACRO, Buffer.concat([Buffer.from("M"), cstr(...mailMacros)]))
    done = await step("mail", P.NOMAIL, P.NR_MAIL, C.MAIL, cstr(`<${envelope.sender}>`))
    if (done) return done
    for (const r of envelope.recipients) {
      done = await step("rcpt", P.NORCPT, P.NR_RCPT, C.RCPT, cstr(`<${r}>`))
      if (done) return done
    }
    if (version >= 4) {
      done = await step("data", P.NODATA, P.NR_DATA, C.DATA)
      if (done) return done
    }
    for (const [name, raw] of Header.list(message)) {
      const value = has(P.HDR_LEADSPC) ? raw : raw.replace(/^[ \t]/, "")
      done = await step("header", P.NOHDRS, P.NR_HDR, C.HEADER, cstr(name, value.replace(/\r\n/g, "\n")))
      if (done) return done
    }
    done = await step("eoh", P.NOEOH, P.NR_EOH, C.EOH)
    if (done) return done
    if (!has(P.NOBODY)) {
      const body = Header.body(message)
      for (let at = 0; at < body.length; at += BODY_CHUNK) {
        conv.send(C.BODY, body.subarray(at, Math.min(body.length, at + BODY_CHUNK)))
        if (has(P.NR_BODY)) continue
        const a = await answer()
        if (a.done) return decided(a, "body")
        if (a.skip) break
      }
    }
    conv.send(C.EOB)
    const last = await answer()
    conv.send(C.QUIT)
    return decided(last.done ? last : { done: true, action: "accept" }, "eom")
  } catch (e) {
    const f = e instanceof Failure ? e : new Failure("garbage", (e as Error)?.message ?? String(e))
    return { _tag: "Failed", reason: f.reason, detail: printable(f.message, 200) }
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}

/** The message with a milter's header edits applied, in the order it sent them. */
export const apply = (message: Buffer, edits: ReadonlyArray<Edit>): Buffer =>
  edits.reduce(
    (m, e) =>
      e._tag === "Add"
        ? Header.append(m, [[e.name, e.value]])
        : e._tag === "Insert"
          ? Header.insert(m, e.index, e.name, e.value)
          : Header.change(m, e.name, e.index, e.value),
    message
  )

export interface MilterFilterOptions extends MilterOptions {
  readonly onFailure: Scan.OnFailure
}

/** A milter at the end of DATA; `name` tells several apart ("milter:127.0.0.1:11332"). */
export const filter = (opts: MilterFilterOptions): Filter => {
  const name = `milter:${opts.host}:${opts.port}`
  let counter = 0
  return {
    name,
    data: async (c) => {
      const queueId = `${c.session.id}.${(counter = (counter + 1) % 1_000_000)}`
      const o = await check(
        opts,
        { ip: c.session.ip, helo: c.session.helo, sender: c.sender, recipients: c.recipients, user: c.session.user, queueId },
        c.message
      )
      if (o._tag === "Failed") return Scan.failed(name, `${o.reason}: ${o.detail}`, opts.onFailure, c.message)
      const detail = [`${o.action} at ${o.step}`, ...(o.reply ? [Reply.format(o.reply)] : []), ...o.ignored].join("; ")
      const base = { name, stage: "data" as const, result: o.action, detail }
      if (o.action === "reject" || o.action === "tempfail") {
        const reply =
          o.reply ??
          (o.action === "reject"
            ? { code: 550, enhanced: "5.7.1", text: "Message rejected by milter" }
            : { code: 451, enhanced: "4.7.1", text: "Message deferred by milter" })
        const v: Verdict = { ...base, action: o.action, reply }
        return { verdicts: [v] }
      }
      const action = o.action === "discard" || o.action === "quarantine" ? "quarantine" : o.edits.length > 0 ? "add-headers" : "accept"
      const v: Verdict = { ...base, action }
      return o.edits.length > 0 ? { verdicts: [v], message: apply(c.message, o.edits) } : { verdicts: [v] }
    }
  }
}
