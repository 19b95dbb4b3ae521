// Moved: the actor host is the scheduler's now (nodes/src/scheduler/Host.ts, Driver.ts, Commands.ts). This door stays
// only until the modules that import it by path (Node.ts, index.ts, admin/, cluster/Fence.ts) point at the new home.
export * from "../scheduler/Host.js"
