// The test DNS server is the simulations' one (simulations/src/Dns.ts): one copy of the loopback authoritative server,
// re-exported here so end-to-end tests keep importing it from their helpers.
export * from "../../simulations/src/Dns.js"
