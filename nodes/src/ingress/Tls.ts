// The ingress certificate: the operator's PEM files, or a self-signed pair generated once into
// <dir>/tls/ and reused on every later start. Must not weaken TLS settings or log key material.
// Security: the generated key is written with mode 0600 inside a 0700 directory, and a pair that
// does not match is refused rather than served.

import { X509Certificate, createPrivateKey } from "node:crypto"
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { generate } from "selfsigned"

export interface TlsOptions {
  readonly cert: string | null
  readonly key: string | null
  readonly dir: string
}

export interface Certificate {
  readonly cert: string
  readonly key: string
  /** Where it came from, for the log. */
  readonly source: "configured" | "generated" | "reused"
  readonly certPath: string
  readonly keyPath: string
}

const readIfExists = async (path: string): Promise<string | undefined> => {
  try {
    return await readFile(path, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

const checkPair = (cert: string, key: string, where: string): void => {
  let matches: boolean
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))
  } catch (e) {
    throw new Error(`TLS certificate or key at ${where} cannot be read: ${(e as Error).message}`)
  }
  if (!matches) throw new Error(`TLS certificate and key at ${where} do not belong together`)
}

/** Writes beside the target and renames, so a crash never leaves half a PEM file behind. */
const writeAtomically = async (path: string, content: string, mode: number): Promise<void> => {
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, content, { mode, flag: "w" })
  await chmod(temporary, mode)
  await rename(temporary, path)
}

export const load = async (options: TlsOptions, hostname: string): Promise<Certificate> => {
  if (options.cert !== null && options.key !== null) {
    const [cert, key] = await Promise.all([readFile(options.cert, "utf8"), readFile(options.key, "utf8")])
    checkPair(cert, key, `${options.cert} / ${options.key}`)
    return { cert, key, source: "configured", certPath: options.cert, keyPath: options.key }
  }
  if (options.cert !== null || options.key !== null) {
    throw new Error("tls: give both cert and key, or neither to use a generated self-signed certificate")
  }
  const dir = join(options.dir, "tls")
  const certPath = join(dir, "cert.pem")
  const keyPath = join(dir, "key.pem")
  const [cert, key] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)])
  if (cert !== undefined && key !== undefined) {
    checkPair(cert, key, dir)
    return { cert, key, source: "reused", certPath, keyPath }
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const pems = await generate([{ name: "commonName", value: hostname }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 2, value: hostname }] }
    ]
  })
  // Key first: a cert.pem on disk always has its key beside it.
  await writeAtomically(keyPath, pems.private, 0o600)
  await writeAtomically(certPath, pems.cert, 0o644)
  return { cert: pems.cert, key: pems.private, source: "generated", certPath, keyPath }
}
