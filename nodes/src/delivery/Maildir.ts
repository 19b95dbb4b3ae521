// Local delivery into Maildir: <root>/<domain>/<localpart>/{tmp,new,cur}, written to tmp, fsynced, renamed into new,
// and the directory fsynced, so a 250 means the message survives a crash. Must not route, filter or rewrite the body:
// it only prepends "Return-Path: <sender>" as Postfix's local(8) does.
// Security stance: recipient addresses are untrusted; a local part or domain that could leave the root ("/", "..",
// a leading dot, control characters) is refused with 550 5.1.1. Unknown mailboxes are created on the fly: every
// address of a local domain is a valid mailbox (no user table).
import { constants } from "node:fs"
import { mkdir, open, rename, unlink } from "node:fs/promises"
import { hostname as osHostname } from "node:os"
import { dirname, join } from "node:path"
import { Reply, Route } from "@missive/core"
import { systemClock, type Clock } from "../runtime/Clock.js"
import type { DeliveryResult, Envelope, RecipientResult } from "./Delivery.js"

/** The host name Maildir writes into file names, with "/" and ":" escaped as the Maildir convention asks. */
const safeHost = (h: string): string => h.replace(/\//g, "\\057").replace(/:/g, "\\072")

const SAFE_PART = (part: string): boolean =>
  part.length > 0 &&
  part.length <= 255 &&
  !part.startsWith(".") &&
  !part.includes("/") &&
  !part.includes("\\") &&
  !part.includes("..") &&
  !/[\x00-\x1f\x7f]/.test(part)

/**
 * The mailbox directory of a recipient under `root` (local part and domain lower-cased), or null when the address
 * cannot name a directory safely.
 */
export const mailboxPath = (root: string, rcpt: string): string | null => {
  const domain = Route.domainOf(rcpt)
  const local = Route.localPartOf(rcpt).toLowerCase()
  if (!SAFE_PART(domain) || !SAFE_PART(local)) return null
  return join(root, domain, local)
}

export interface MaildirOptions {
  readonly root: string
  /** Host name in file names (default: the OS host name). */
  readonly hostname?: string | undefined
  /** Only names files (default: the system clock). */
  readonly clock?: Clock | undefined
}

export interface Maildir {
  /** Writes one copy per recipient; never rejects. */
  deliver(envelope: Envelope, body: Buffer): Promise<DeliveryResult>
}

const fsyncDir = async (dir: string): Promise<void> => {
  const fh = await open(dir, constants.O_RDONLY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

const errorReply = (err: unknown): Reply.Reply => {
  const code = (err as { code?: string }).code ?? ""
  if (code === "ENOSPC" || code === "EDQUOT") return Reply.Replies.storeFull
  return Reply.Replies.localError(code || String((err as Error).message ?? err))
}

export const makeMaildir = (options: MaildirOptions): Maildir => {
  const host = safeHost(options.hostname ?? osHostname())
  const clock = options.clock ?? systemClock
  let counter = 0

  /** Makes tmp/new/cur; when the mailbox is new, fsyncs the directories that gained an entry. */
  const ensure = async (dir: string): Promise<void> => {
    const created = await mkdir(join(dir, "tmp"), { recursive: true, mode: 0o700 })
    await mkdir(join(dir, "new"), { recursive: true, mode: 0o700 })
    await mkdir(join(dir, "cur"), { recursive: true, mode: 0o700 })
    if (created !== undefined) {
      // every directory from the mailbox up to the parent of the first one created gained an entry
      const stop = dirname(created)
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(d)
        if (d === stop || d === dirname(d)) break
      }
    }
  }

  const deliverOne = async (rcpt: string, header: Buffer, body: Buffer): Promise<Reply.Reply> => {
    const dir = mailboxPath(options.root, rcpt)
    if (dir === null) return Reply.Replies.mailboxUnavailable
    try {
      await ensure(dir)
      for (;;) {
        const name = `${Math.floor(clock.now() / 1000)}.${process.pid}_${++counter}.${host}`
        const tmp = join(dir, "tmp", name)
        let fh
        try {
          fh = await open(tmp, "wx", 0o600)
        } catch (err) {
          if ((err as { code?: string }).code === "EEXIST") continue
          throw err
        }
        try {
          await fh.writev([header, body])
          await fh.sync()
        } catch (err) {
          await fh.close().catch(() => undefined)
          await unlink(tmp).catch(() => undefined)
          throw err
        }
        await fh.close()
        try {
          await rename(tmp, join(dir, "new", name))
        } catch (err) {
          await unlink(tmp).catch(() => undefined)
          throw err
        }
        await fsyncDir(join(dir, "new"))
        return Reply.Replies.ok
      }
    } catch (err) {
      return errorReply(err)
    }
  }

  return {
    deliver: async (envelope, body) => {
      const sender = envelope.from.replace(/[\r\n<>]/g, "")
      const header = Buffer.from(`Return-Path: <${sender}>\r\n`, "utf8")
      const results: RecipientResult[] = []
      // one at a time: deliveries to one mailbox stay in envelope order, and the disk sees no burst of fsyncs
      for (const rcpt of envelope.to) results.push({ rcpt, reply: await deliverOne(rcpt, header, body) })
      return { host: "maildir", results }
    }
  }
}
