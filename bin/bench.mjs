#!/usr/bin/env node
// `npm run bench [-- NAME...]`: runs the benchmarks in bench/*.bench.ts one after another (all when no name is given).
import { register } from "tsx/esm/api"

register()
const { main } = await import("../bench/run.ts")
process.exitCode = await main(process.argv.slice(2))
