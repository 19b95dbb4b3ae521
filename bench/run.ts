// Benchmark runner: each bench/NAME.bench.ts exports `run(): Promise<string>` returning a Markdown section;
// the runner prints it and writes it to bench/results/NAME.md. Benchmarks measure; tests never time anything.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const DIR = import.meta.dirname

export const main = async (names: ReadonlyArray<string>): Promise<number> => {
  const all = readdirSync(DIR)
    .filter((f) => f.endsWith(".bench.ts"))
    .map((f) => f.replace(/\.bench\.ts$/, ""))
    .sort()
  const chosen = names.length > 0 ? names : all
  const unknown = chosen.filter((n) => !all.includes(n))
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown benchmark(s) ${unknown.join(", ")}; have ${all.join(", ")}\n`)
    return 2
  }
  mkdirSync(join(DIR, "results"), { recursive: true })
  let failed = 0
  for (const name of chosen) {
    process.stderr.write(`bench: ${name} …\n`)
    try {
      const mod = (await import(join(DIR, `${name}.bench.ts`))) as { run: () => Promise<string> }
      const md = await mod.run()
      writeFileSync(join(DIR, "results", `${name}.md`), md + "\n")
      process.stdout.write(`${md}\n\n`)
    } catch (e) {
      failed += 1
      process.stderr.write(`bench: ${name} failed: ${String((e as Error)?.stack ?? e)}\n`)
    }
  }
  return failed === 0 ? 0 : 1
}
