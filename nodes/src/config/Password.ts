// Password hashes for `auth.users`: "scrypt$<salt base64>$<hash base64>", made and checked with node:crypto scrypt.
// Never stores, logs or returns a plain password. Verification is constant-time and runs off the event loop.
// The salt comes from crypto.randomBytes: a security primitive, not the simulation's Random service.
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto"

// Node's scrypt defaults (N = 16384, r = 8, p = 1); they are not in the hash, so changing them breaks old hashes.
const keyLength = 32
const saltLength = 16
const prefix = "scrypt"

const derive = (plain: string, salt: Buffer, length: number): Promise<Buffer> =>
  new Promise((resolve, reject) => scrypt(plain.normalize("NFC"), salt, length, (error, key) => (error ? reject(error) : resolve(key))))

const base64 = /^[A-Za-z0-9+/]+={0,2}$/

const split = (hash: string): { readonly salt: Buffer; readonly key: Buffer } | undefined => {
  const parts = hash.split("$")
  if (parts.length !== 3 || parts[0] !== prefix) return undefined
  const [, salt, key] = parts as [string, string, string]
  if (!base64.test(salt) || !base64.test(key)) return undefined
  const decoded = { salt: Buffer.from(salt, "base64"), key: Buffer.from(key, "base64") }
  return decoded.salt.length > 0 && decoded.key.length >= 16 ? decoded : undefined
}

/** Whether `text` has the shape of a hash this module makes (it does not say whether any password matches). */
export const isHash = (text: string): boolean => split(text) !== undefined

/** Hashes a password for the configuration file. */
export const hashPassword = async (plain: string): Promise<string> => {
  const salt = randomBytes(saltLength)
  const key = await derive(plain, salt, keyLength)
  return `${prefix}$${salt.toString("base64")}$${key.toString("base64")}`
}

/** Whether `plain` matches `hash`; a malformed hash matches nothing. */
export const verifyPassword = async (plain: string, hash: string): Promise<boolean> => {
  const parsed = split(hash)
  if (parsed === undefined) return false
  const key = await derive(plain, parsed.salt, parsed.key.length)
  return timingSafeEqual(key, parsed.key)
}
