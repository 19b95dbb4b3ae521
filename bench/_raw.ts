import Database from "better-sqlite3"
import { decodeTrusted } from "../events/src/Codec.js"
const db = new Database("/tmp/rp/prof.db", { readonly: true })
const q = db.prepare("SELECT position, stream, version, data FROM events WHERE position > ? ORDER BY position LIMIT ?")
const qr = db.prepare("SELECT position, stream, version, data FROM events WHERE position > ? ORDER BY position LIMIT ?").raw(true)
for (let k = 0; k < 3; k++) {
let t0 = performance.now(); let n = 0
for (let p = 0; ;) { const rows = q.all(p, 5000) as any[]; if (!rows.length) break; for (const r of rows) { n++ } p = rows[rows.length-1].position }
console.log("objects, no decode", performance.now() - t0)
t0 = performance.now()
for (let p = 0; ;) { const rows = qr.all(p, 5000) as any[]; if (!rows.length) break; p = rows[rows.length-1][0] }
console.log("raw, no decode", performance.now() - t0)
t0 = performance.now()
for (let p = 0; ;) { const rows = qr.all(p, 5000) as any[]; if (!rows.length) break; const out = rows.map((r) => ({ stream: r[1], version: r[2], position: r[0], event: decodeTrusted(r[3]) })); p = rows[rows.length-1][0] }
console.log("raw + decode", performance.now() - t0)
t0 = performance.now()
for (let p = 0; ;) { const rows = q.all(p, 5000) as any[]; if (!rows.length) break; const out = rows.map((r) => ({ stream: r.stream, version: r.version, position: r.position, event: decodeTrusted(r.data) })); p = rows[rows.length-1].position }
console.log("objects + decode", performance.now() - t0)
}
