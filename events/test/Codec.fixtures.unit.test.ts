// Golden encoded events of every schema version and every event type (fixtures/v<N>/<Type>.json): each is decoded
// through Codec.decode (upcast + validate) and must equal its expected value. A new version adds a folder; old
// folders are never edited, so a change that breaks reading an old log fails here. An optional fact added within a
// version (an attempt's trace, a multi-line reply) gets a variant fixture beside the plain one: <Type>.<variant>.json.
import { Message } from "@missive/core"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Codec from "../src/Codec.js"

const DIR = join(import.meta.dirname, "fixtures")
const versions = readdirSync(DIR)
  .filter((d) => /^v\d+$/.test(d))
  .sort()

interface Fixture {
  readonly encoded: Record<string, unknown>
  readonly expected: Message.Event
}

describe.each(versions)("fixtures %s", (version) => {
  const files = readdirSync(join(DIR, version))
    .filter((f) => f.endsWith(".json"))
    .sort()

  it("cover every event type", () => {
    expect([...new Set(files.map((f) => f.replace(/\..*$/, "")))].sort()).toEqual([...Message.EVENT_TYPES].sort())
  })

  it.each(files)("%s decodes to its expected event", (file) => {
    const f = JSON.parse(readFileSync(join(DIR, version, file), "utf8")) as Fixture
    const decoded = Codec.decode(JSON.stringify(f.encoded))
    expect(decoded).toEqual(f.expected)
    expect(decoded.v).toBe(Message.SCHEMA_VERSION)
    // The trusted (hot-path) decoder upcasts the same way, and a decoded event re-encodes to itself.
    expect(Codec.decodeTrusted(JSON.stringify(f.encoded))).toEqual(f.expected)
    expect(Codec.decode(Codec.encode(decoded))).toEqual(decoded)
  })
})
