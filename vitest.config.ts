import { defaultServerConditions } from "vite"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// Tests run the TypeScript sources: `@missive/*` resolves through each package.json's "source" export condition (the
// runtime, with no condition, gets dist/). Processes the tests spawn (bin/missive.mjs, sim-node.mjs) run the compiled
// dist/, which the global setup brings up to date first (an incremental tsc -b: about a second when nothing changed).
export default defineConfig({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
  test: {
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "data/**"],
    // Absolute: each package runs vitest from its own directory (`--dir .`), where a relative path would not resolve.
    globalSetup: [fileURLToPath(new URL("./test/src/BuildSetup.ts", import.meta.url))],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: false
  }
})
