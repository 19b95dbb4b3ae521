// Turns a Schema issue into configuration errors: one problem per bad key, with its YAML path and, given
// the parsed document, where the key sits in the file. Knows nothing of Missive's keys.
// Messages may quote the offending value, except where a filter supplies its own message (passwords do).
import { SchemaAST, SchemaIssue } from "effect"
import { isMap, isSeq, type Document } from "yaml"

export type Path = ReadonlyArray<PropertyKey>
export interface Problem {
  readonly path: Path
  readonly message: string
}

const show = (u: unknown): string => {
  if (u === undefined) return "nothing"
  if (Array.isArray(u)) return "a list"
  if (typeof u === "object" && u !== null) return "a mapping"
  const s = typeof u === "string" ? JSON.stringify(u) : String(u)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

const got = (issue: SchemaIssue.Issue): string => (SchemaIssue.hasInput(issue) ? `, got ${show(issue.input)}` : "")

const describe = (ast: SchemaAST.AST): string => {
  const expected = ast.annotations?.expected
  if (typeof expected === "string") return expected
  switch (ast._tag) {
    case "Objects":
      return "a mapping"
    case "Arrays":
      return "a list"
    case "String":
      return "a string"
    case "Number":
      return "a number"
    default:
      return ast._tag
  }
}

const distance = (a: string, b: string): number => {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

const unknownKey = (issue: SchemaIssue.UnexpectedKey, path: Path): string => {
  const key = String(path[path.length - 1] ?? "")
  const known = SchemaAST.isObjects(issue.ast) ? issue.ast.propertySignatures.map((p) => String(p.name)) : []
  const near = known.filter((k) => distance(k, key) <= 2).sort((a, b) => distance(a, key) - distance(b, key))[0]
  return near === undefined ? `unknown key (expected one of: ${known.join(", ")})` : `unknown key (did you mean ${near}?)`
}

export const fromIssue = (issue: SchemaIssue.Issue, path: Path = []): ReadonlyArray<Problem> => {
  const one = (message: string): ReadonlyArray<Problem> => [{ path, message }]
  switch (issue._tag) {
    case "Pointer":
      return fromIssue(issue.issue, [...path, ...issue.path])
    case "Composite":
      return issue.issues.flatMap((i) => fromIssue(i, path))
    case "AnyOf":
      return issue.issues.length > 0 ? issue.issues.flatMap((i) => fromIssue(i, path)) : one(`expected ${describe(issue.ast)}${got(issue)}`)
    case "Encoding":
      return fromIssue(issue.issue, path)
    case "Filter": {
      const own = issue.filter.annotations?.message
      if (typeof own === "string") return one(own)
      const inner = issue.issue
      if (inner._tag !== "InvalidValue") return fromIssue(inner, path)
      const message = inner.annotations?.message
      if (typeof message === "string") return one(message)
      const expected = issue.filter.annotations?.expected
      return one(`expected ${typeof expected === "string" ? expected : "a valid value"}${got(issue)}`)
    }
    case "InvalidType":
      return one(`expected ${describe(issue.ast)}${got(issue)}`)
    case "InvalidValue": {
      const message = issue.annotations?.message
      return one(typeof message === "string" ? message : `invalid value${got(issue)}`)
    }
    case "MissingKey":
      return one("required key is missing")
    case "UnexpectedKey":
      return one(unknownKey(issue, path))
    case "Forbidden":
    case "OneOf":
      return one(`invalid value${got(issue)}`)
  }
}

export const formatPath = (path: Path): string => {
  if (path.length === 0) return "(top level)"
  return path
    .map((k, i) =>
      typeof k === "number"
        ? `[${k}]`
        : typeof k === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k)
          ? i === 0
            ? k
            : `.${k}`
          : `[${JSON.stringify(String(k))}]`
    )
    .join("")
}

/** Offset of the node a path names (the key itself for a key), or of its nearest ancestor that exists. */
export const offsetOf = (doc: Document, path: Path): number | undefined => {
  for (let n = path.length; n > 0; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true)
    const key = path[n - 1]
    if (isMap(parent)) {
      const pair = parent.items.find((p) => String((p.key as { value?: unknown } | null)?.value ?? p.key) === String(key))
      const range = (pair?.key as { range?: [number, number, number] } | null)?.range
      if (range !== undefined) return range[0]
    } else if (isSeq(parent) && typeof key === "number") {
      const range = (parent.items[key] as { range?: [number, number, number] } | undefined)?.range
      if (range !== undefined) return range[0]
    }
  }
  return (doc.contents as { range?: [number, number, number] } | null)?.range?.[0]
}
