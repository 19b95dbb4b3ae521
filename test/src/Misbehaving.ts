// A TCP server on loopback that misbehaves the way a broken scanner or milter does (never answers, answers garbage,
// closes mid-reply): the test gives what it does to each connection. close() ends its connections and the server.
import { createServer, type Server, type Socket } from "node:net"

/** A TCP server that does `onConnection` to each client; loopback. */
export const misbehaving = async (onConnection: (s: Socket) => void): Promise<{ port: number; close: () => Promise<void> }> => {
  const sockets = new Set<Socket>()
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on("error", () => undefined)
    s.once("close", () => sockets.delete(s))
    onConnection(s)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as { port: number }).port
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      })
  }
}
