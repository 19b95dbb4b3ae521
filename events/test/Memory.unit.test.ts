import { makeMemory as memBodies } from "../src/BodyStore.js"
import { makeMemory as memEvents } from "../src/EventStore.js"
import { makeMemory as memWork } from "../src/Work.js"
import { bodyStoreContract, eventStoreContract, workContract } from "./contracts.js"

const fixture =
  <T>(store: T) =>
  async () => ({ store, dispose: async () => {} })
eventStoreContract("memory", () => fixture(memEvents())())
bodyStoreContract("memory", () => fixture(memBodies())())
workContract("memory", () => fixture(memWork())())
