// A throw-away certificate authority for tests, made with the openssl command line: a CA certificate and leaf
// certificates for given DNS names, signed by it (EC P-256, so each takes milliseconds). Test-only: keys are written
// to a temporary directory the caller removes; nothing here is fit to protect anything.
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"

export interface KeyPair {
  readonly key: string
  readonly cert: string
}

export interface Ca extends KeyPair {
  /** The CA certificate's PEM file, for a node's `delivery.tls_ca_file`. */
  readonly certFile: string
  /** A leaf certificate for these DNS names (the first is also the subject's CN). */
  issue(names: ReadonlyArray<string>): KeyPair
}

const openssl = (args: ReadonlyArray<string>): void => void execFileSync("openssl", [...args], { stdio: ["ignore", "ignore", "pipe"] })

export const makeCa = (dir: string, name = "Missive Test CA"): Ca => {
  const key = join(dir, "ca.key")
  const certFile = join(dir, "ca.pem")
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
  openssl(["req", "-x509", "-new", "-key", key, "-sha256", "-days", "2", "-subj", `/CN=${name}`, "-out", certFile])
  let serial = 0
  return {
    key: readFileSync(key, "utf8"),
    cert: readFileSync(certFile, "utf8"),
    certFile,
    issue: (names) => {
      const base = join(dir, `leaf-${++serial}`)
      const ext = `${base}.ext`
      writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\nextendedKeyUsage=serverAuth\n`)
      openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`])
      openssl(["req", "-new", "-key", `${base}.key`, "-subj", `/CN=${names[0] ?? "leaf"}`, "-out", `${base}.csr`])
      openssl([
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        certFile,
        "-CAkey",
        key,
        "-set_serial",
        String(1000 + serial),
        "-days",
        "2",
        "-sha256",
        "-extfile",
        ext,
        "-out",
        `${base}.pem`
      ])
      return { key: readFileSync(`${base}.key`, "utf8"), cert: readFileSync(`${base}.pem`, "utf8") }
    }
  }
}
