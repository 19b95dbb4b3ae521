// The durability contract at the edges: with too little free disk the node answers 452 and stores nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rawMessage, send, startNode, tempDir, testConfig } from "../src/Harness.js"
import type { Node } from "@missive/node"

describe("store limits", () => {
  let node: Node.RunningNode
  const dir = tempDir()
  beforeAll(async () => {
    node = await startNode(testConfig(dir.path, { store: { min_free_space: "1000TB" } }))
  })
  afterAll(async () => {
    await node?.stop()
    dir.remove()
  })

  it("answers 452 4.3.1 when the disk is nearly full, and keeps nothing", async () => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "a@x.test", to: ["bob@missive.test"] },
      rawMessage({ from: "a@x.test", to: "bob@missive.test", subject: "no room" })
    )
    expect(r.ok).toBe(false)
    expect(r.response).toMatch(/^452 4\.3\.1/)
    // Only what the node recorded of itself at start (its policy, stream `policy`): nothing of the message.
    expect((await node.store.events.readAll(0, 100)).map((e) => e.stream)).toEqual(["policy"])
    expect(await node.store.work.count()).toBe(0)
  })
})
