// Stable non-cryptographic string hashing (32-bit FNV-1a): the policy hash, partition and shard keys, seeded draws.
// Pure and platform-free; must not be used where an adversary chooses the input and a collision matters (use sha256).

/** 32-bit FNV-1a of a string's UTF-16 code units, unsigned. */
export const fnv1a32 = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0
  return h
}
