import { Message } from "@missive/core"
import { EventStore, Projection, SqliteStore } from "@missive/events"
import { generate, livePolicy, world } from "../nodes/src/replay/Synthetic.js"
import * as WhatIf from "../nodes/src/replay/WhatIf.js"
const START = Date.UTC(2026, 4, 1)
const path = "/tmp/rp/prof.db"
import { existsSync, rmSync } from "node:fs"
if (!existsSync(path)) {
  const w = world({ seed: 11, start: START, spanMs: 86400000, messages: 18000, domains: 500, tailMs: 86400000 / 4, outageShare: 0.15 })
  const batches: Array<[string, ReadonlyArray<Message.Event>]> = []
  let t0 = performance.now()
  generate(w, (id, evs) => batches.push([id, evs]), { maxEvents: 100000 })
  console.log("gen", performance.now() - t0)
  const store = SqliteStore.open({ path, synchronous: "OFF", maxPending: 1e9 })
  const versions = new Map<string, number>()
  t0 = performance.now()
  for (let i = 0; i < batches.length; i += 20_000) await Promise.all(batches.slice(i, i + 20_000).map(([id, evs]) => { const s = EventStore.streamOf(id); const v = versions.get(s) ?? 0; versions.set(s, v + evs.length); return store.events.append(s, v, evs) }))
  console.log("append", performance.now() - t0)
  await store.close()
}
const store = SqliteStore.open({ path, readonly: true })
let t0 = performance.now()
let n = 0
for (let p = 0; ; ) { const b = await store.events.readAll(p, 5000); if (!b.length) break; n += b.length; p = b[b.length - 1]!.position }
console.log("scan", n, performance.now() - t0)
t0 = performance.now()
await Projection.rebuild(store.events, Projection.queue, Projection.memoryCheckpoints())
console.log("queue", performance.now() - t0)
t0 = performance.now()
await Projection.rebuild(store.events, Projection.destinations, Projection.memoryCheckpoints())
console.log("dest", performance.now() - t0)
t0 = performance.now()
const rec = await WhatIf.record(store.events, { from: START, to: START + 2 * 86400000 })
console.log("record", performance.now() - t0)
t0 = performance.now()
WhatIf.simulate(rec, livePolicy)
console.log("sim", performance.now() - t0)
