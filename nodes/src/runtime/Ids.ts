// Message ids: ULIDs (time-ordered, 26 chars Crockford base32), from the injected clock and random source.
import type { Clock, Random } from "./Clock.js"

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

export const makeIds = (clock: Clock, random: Random): { next(): string } => {
  let lastTime = -1
  let lastRand: Array<number> = []
  return {
    next: () => {
      const t = clock.now()
      if (t === lastTime) {
        // Monotonic within the same millisecond: increment the random part.
        for (let i = lastRand.length - 1; i >= 0; i--) {
          if (lastRand[i]! < 31) {
            lastRand[i]! += 1
            break
          }
          lastRand[i] = 0
        }
      } else {
        lastTime = t
        lastRand = Array.from({ length: 16 }, () => Math.floor(random.next() * 32))
      }
      let time = ""
      let v = t
      for (let i = 0; i < 10; i++) {
        time = ALPHABET[v % 32] + time
        v = Math.floor(v / 32)
      }
      return time + lastRand.map((d) => ALPHABET[d]).join("")
    }
  }
}
