// The package stack, enforced (`npm run lint`, first in `npm test`): cli → simulations → nodes → events → core, with
// test/ and the root's bench/ and bin/ on top. A package is imported only through its door (src/index.ts), never
// against the direction, never in a cycle, and a package's src/ imports only the npm packages its package.json lists.
// scripts/manifests.mjs checks the other half of that last rule (a manifest lists nothing its src/ does not import).
// core/test/Boundary.unit.test.ts additionally keeps core free of effect, Node builtins, clocks and randomness.

const PACKAGES = "cli|core|events|nodes|simulations|test"
// What each package may not import (everything above it). test/, bench/ and bin/ may import any package's door.
const BELOW = {
  core: "events|nodes|simulations|cli|test",
  events: "nodes|simulations|cli|test",
  nodes: "simulations|cli|test",
  simulations: "cli|test",
  cli: "test"
}

/** @type {import("dependency-cruiser").IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "package-cycle",
      comment: "A cycle that leaves a package: packages form a straight stack, so no import may come back down to up.",
      severity: "error",
      from: { path: `^(${PACKAGES}|bench|bin)/` },
      to: { circular: true, via: { pathNot: "^$1/" } }
    },
    {
      name: "package-internals",
      comment: "A package's src/ imports another package through its door only (`@missive/x`, resolving to x/src/index.ts).",
      severity: "error",
      from: { path: "^([^/]+)/src/" },
      to: { path: `^(${PACKAGES})/`, pathNot: ["^$1/", `^(${PACKAGES})/src/index\\.ts$`] }
    },
    {
      name: "package-internals",
      comment:
        "Tests, bench/ and scripts of a package import another package through its door only; the one kit they may " +
        "reach into is test/src/ (capture SMTP server, DNS server, NATS launcher, node harness), which has no door.",
      severity: "error",
      from: { path: "^([^/]+)/", pathNot: "^(bin/|[^/]+/src/)" },
      to: { path: `^(${PACKAGES})/`, pathNot: ["^$1/", `^(${PACKAGES})/src/index\\.ts$`, "^test/src/"] }
    },
    {
      name: "package-internals",
      comment: "bin/ reaches packages through their doors; one named exception: bin/missive.mjs runs cli/src/main.ts.",
      severity: "error",
      from: { path: "^bin/" },
      to: { path: `^(${PACKAGES})/`, pathNot: [`^(${PACKAGES})/src/index\\.ts$`, "^cli/src/main\\.ts$"] }
    },
    ...Object.entries(BELOW).map(([pkg, above]) => ({
      name: "against-the-direction",
      comment: `${pkg}/ sits below ${above.split("|").join(", ")}: it may not import them (cli → simulations → nodes → events → core).`,
      severity: "error",
      from: { path: `^${pkg}/` },
      to: { path: `^(${above})/`, pathNot: "^test/src/" }
    })),
    ...Object.keys(BELOW).map((pkg) => ({
      name: "against-the-direction",
      comment: `${pkg}/src/ may not use the test kit (test/src/); only ${pkg}'s tests may.`,
      severity: "error",
      from: { path: `^${pkg}/src/` },
      to: { path: "^test/" }
    })),
    {
      name: "npm-not-in-manifest",
      comment:
        "A package's src/ (and bench/, bin/: the root manifest) imports an npm package its own package.json does not " +
        "list in dependencies. Tests may also use the root's devDependencies (vitest, fast-check).",
      severity: "error",
      from: { path: `^((${PACKAGES})/src|bench|bin)/`, pathNot: "^bin/bench\\.mjs$" },
      to: { dependencyTypes: ["npm-no-pkg", "npm-unknown", "npm-dev", "npm-optional", "npm-peer", "npm-bundled"] }
    },
    {
      name: "npm-not-in-manifest-dev-tool",
      comment: "bin/bench.mjs is a dev tool (it runs bench/*.ts through tsx): it may use the root's devDependencies.",
      severity: "error",
      from: { path: "^bin/bench\\.mjs$" },
      to: { dependencyTypes: ["npm-no-pkg", "npm-unknown", "npm-optional", "npm-peer", "npm-bundled"] }
    },
    {
      name: "npm-not-installed",
      comment: "An import that resolves to nothing: a missing package or a typo in a path.",
      severity: "error",
      from: {},
      to: { couldNotResolve: true, pathNot: "^(bun|deno):" }
    }
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^[a-z]+/(data|dist|sim-reports)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    combinedDependencies: false,
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["source", "import", "require", "node", "default", "types"],
      extensions: [".ts", ".mjs", ".js", ".cjs", ".json", ".d.ts"]
    },
    reporterOptions: { text: { highlightFocused: true } }
  }
}
