// @missive/cli: the `missive` command. Its one export is `main(argv) → exit code`; bin/missive.mjs calls it.
// Nothing in the workspace imports this package: it sits on top of the stack (cli → simulations → nodes → …).
export { main } from "./main.js"
