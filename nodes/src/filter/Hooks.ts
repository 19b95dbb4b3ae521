// In-process hooks (the Haraka idea): JavaScript or TypeScript modules named in `filter.hooks`, each exporting any of
// `connect`, `helo`, `mail`, `rcpt`, `data`, `queued` (and optionally `name`). A hook gets that stage's context and returns
// nothing (carry on) or a decision: an action, the reply for a refusal, headers to add (data), a result word.
// `queued` is told of each message once it is durable (after the 250): it cannot change anything, and what it does
// or throws never reaches the client. Modules are loaded once, at the first session; a hook that throws, or answers after `timeoutMs`, gives 451 4.3.0
// (the stage's rule for a failing filter), never a hung session. Security: hooks run in the node's process with its
// rights: only modules the operator names are loaded; what they return is checked before it is used.
import { isAbsolute, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { Reply } from "@missive/core"
import type { Action, Filter, Stage, StageResult, Verdict } from "./Filter.js"
import * as Header from "./Header.js"

/** What a hook may return. */
export interface Decision {
  readonly action?: Action | undefined
  /** The reply for reject/tempfail: a code of the right class, an enhanced code, a text. */
  readonly reply?: { readonly code: number; readonly enhanced?: string | undefined; readonly text: string } | undefined
  /** data only: header fields to add at the top of the message. */
  readonly headers?: Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]> | undefined
  readonly result?: string | undefined
  readonly detail?: string | undefined
}

type HookFn = (context: unknown) => Decision | undefined | void | Promise<Decision | undefined | void>

export interface HookModule {
  readonly name: string
  readonly hooks: Partial<Record<Stage, HookFn>>
  readonly queued: ((context: QueuedContext) => unknown) | undefined
}

/** What a `queued` hook is told: the message as it was made durable. */
export interface QueuedContext {
  readonly id: string
  readonly sender: string
  readonly recipients: ReadonlyArray<string>
  readonly client: { readonly ip: string; readonly helo: string; readonly tls: boolean; readonly user?: string | undefined }
  readonly size: number
}

const STAGES: ReadonlyArray<Stage> = ["connect", "helo", "mail", "rcpt", "data"]
const ACTIONS: ReadonlyArray<Action> = ["accept", "add-headers", "quarantine", "tempfail", "reject"]
const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/

/** Imports one hook module: its named exports, or those of its default export. */
export const load = async (path: string, base = process.cwd()): Promise<HookModule> => {
  const file = isAbsolute(path) ? path : resolve(base, path)
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>
  const exports = (mod["default"] && typeof mod["default"] === "object" ? mod["default"] : mod) as Record<string, unknown>
  const hooks: Partial<Record<Stage, HookFn>> = {}
  for (const s of STAGES) if (typeof exports[s] === "function") hooks[s] = exports[s] as HookFn
  const queued = typeof exports["queued"] === "function" ? (exports["queued"] as (c: QueuedContext) => unknown) : undefined
  if (Object.keys(hooks).length === 0 && !queued) throw new Error(`hook module ${file} exports none of ${STAGES.join(", ")}, queued`)
  const name = typeof exports["name"] === "string" && exports["name"] !== "" ? exports["name"] : file
  return { name, hooks, queued }
}

/** A hook's decision as a verdict (and the message with its headers, at data); a malformed decision is an error. */
export const resultOf = (name: string, stage: Stage, d: Decision | undefined | void, message?: Buffer): StageResult => {
  if (d === undefined || d === null) return { verdicts: [] }
  if (typeof d !== "object") throw new Error(`hook ${name} (${stage}) returned ${typeof d}, not a decision object`)
  const action = d.action ?? (d.headers ? "add-headers" : "accept")
  if (!ACTIONS.includes(action)) throw new Error(`hook ${name} (${stage}) returned an unknown action ${JSON.stringify(action)}`)
  let reply: Reply.Reply | undefined
  if (action === "reject" || action === "tempfail") {
    const want = action === "reject" ? 5 : 4
    const r = d.reply
    const enhanced =
      r?.enhanced !== undefined && new RegExp(`^${want}\\.\\d{1,3}\\.\\d{1,3}$`).test(r.enhanced) ? r.enhanced : `${want}.7.1`
    reply =
      r && Number.isInteger(r.code) && Math.floor(r.code / 100) === want && typeof r.text === "string"
        ? { code: r.code, enhanced, text: r.text.replace(/[^\x20-\x7e]+/g, " ").slice(0, 200) }
        : { code: want === 5 ? 550 : 451, enhanced, text: action === "reject" ? "Rejected by policy" : "Try again later" }
  }
  const verdict: Verdict = {
    name,
    stage,
    result: typeof d.result === "string" ? d.result : action,
    action,
    ...(reply ? { reply } : {}),
    ...(typeof d.detail === "string" ? { detail: d.detail.slice(0, 500) } : {})
  }
  if (stage !== "data" || !d.headers || message === undefined) return { verdicts: [verdict] }
  const fields = (Array.isArray(d.headers) ? d.headers : Object.entries(d.headers)) as ReadonlyArray<readonly [string, string]>
  for (const [n, v] of fields)
    if (!HEADER_NAME.test(n) || typeof v !== "string") throw new Error(`hook ${name} returned a bad header ${JSON.stringify(n)}`)
  return { verdicts: [verdict], message: Header.prepend(message, fields) }
}

const withDeadline = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`${what} did not answer within ${ms} ms`)), ms)
    p.then(
      (v) => {
        clearTimeout(t)
        ok(v)
      },
      (e: unknown) => {
        clearTimeout(t)
        fail(e)
      }
    )
  })

/** One filter per hook module, in the configured order; each loads its module at first use. */
export const filters = (paths: ReadonlyArray<string>, timeoutMs: number): ReadonlyArray<Filter> =>
  paths.map((path) => {
    let loaded: Promise<HookModule> | undefined
    const mod = () => (loaded ??= load(path))
    const step =
      (stage: Stage) =>
      async (context: unknown): Promise<StageResult> => {
        const m = await mod()
        const fn = m.hooks[stage]
        if (!fn) return { verdicts: [] }
        const d = await withDeadline(
          Promise.resolve().then(() => fn(context)),
          timeoutMs,
          `hook ${m.name} (${stage})`
        )
        return resultOf(m.name, stage, d, stage === "data" ? (context as { message: Buffer }).message : undefined)
      }
    return {
      name: `hook:${path}`,
      connect: step("connect"),
      helo: step("helo"),
      mail: step("mail"),
      rcpt: step("rcpt"),
      data: step("data")
    }
  })

/**
 * The `queued` hooks of the configured modules, for the node to call once a message is durable; undefined when no
 * module is configured. Each runs detached with its deadline; a failure is logged, never answered.
 */
export const queued = (
  paths: ReadonlyArray<string>,
  timeoutMs: number,
  log: (o: Record<string, unknown>) => void
): ((context: QueuedContext) => void) | undefined => {
  if (paths.length === 0) return undefined
  let loaded: Promise<ReadonlyArray<HookModule>> | undefined
  return (context) => {
    loaded ??= Promise.all(paths.map((p) => load(p)))
    void loaded
      .then((mods) =>
        Promise.all(
          mods.map((m) =>
            m.queued === undefined
              ? undefined
              : withDeadline(
                  Promise.resolve().then(() => m.queued!(context)),
                  timeoutMs,
                  `hook ${m.name} (queued)`
                ).catch((e: unknown) =>
                  log({
                    event: "filter.hook-failed",
                    hook: m.name,
                    stage: "queued",
                    id: context.id,
                    error: String((e as Error)?.message ?? e)
                  })
                )
          )
        )
      )
      .catch((e: unknown) =>
        log({ event: "filter.hook-failed", stage: "queued", id: context.id, error: String((e as Error)?.message ?? e) })
      )
  }
}
