// The CNI hand-off's framing: what the plugins' first process (native/cni_shim.c) sends the node
// daemon over its root-only unix socket, and what the daemon answers. Pure: bytes in, values
// out. Not: the socket (src/node/cni_server.ts) or running the plugin (plugin_main.ts,
// ipam_plugin.ts).
//
// Request:  "OCNI" u32(version=1) u32(len) plugin  u32(count) { u32(len) "KEY=VALUE" }*count
//           u32(len) stdin
// Answer:   "OCNI" u8(0 = done) i32(exit code) u32(len) stdout
//           "OCNI" u8(1 = declined: the caller runs the plugin itself)
// Integers are big-endian. Every length is bounded; a malformed request gets no answer.

export const HANDOFF_MAGIC = "OCNI";
export const HANDOFF_VERSION = 1;
/** The plugins the daemon runs for a caller. */
export const HANDOFF_PLUGINS = ["ocelot-cni", "ocelot-ipam"] as const;
export type HandoffPlugin = (typeof HANDOFF_PLUGINS)[number];
/** Bounds the request a daemon buffers (the shim sends at most 4 MiB of stdin). */
export const MAX_REQUEST_BYTES = 8 << 20;
const MAX_ENV_ENTRIES = 4096;

export interface HandoffRequest {
  plugin: HandoffPlugin;
  env: Record<string, string>;
  stdin: string;
}

export class HandoffFrameError extends Error {
  override name = "HandoffFrameError";
}

/** The request in buf, undefined while more bytes are needed; a malformed one throws. */
export function decodeRequest(buf: Buffer): HandoffRequest | undefined {
  if (buf.length > MAX_REQUEST_BYTES)
    throw new HandoffFrameError(`request larger than ${MAX_REQUEST_BYTES} bytes`);
  let at = 0;
  const need = (n: number) => at + n <= buf.length;
  const u32 = (): number | undefined => {
    if (!need(4)) return undefined;
    const v = buf.readUInt32BE(at);
    at += 4;
    return v;
  };
  const bytes = (): string | undefined => {
    const n = u32();
    if (n === undefined) return undefined;
    if (n > MAX_REQUEST_BYTES) throw new HandoffFrameError(`field of ${n} bytes`);
    if (!need(n)) return undefined;
    const s = buf.toString("utf8", at, at + n);
    at += n;
    return s;
  };
  if (!need(4)) return undefined;
  if (buf.toString("latin1", 0, 4) !== HANDOFF_MAGIC) throw new HandoffFrameError("bad magic");
  at = 4;
  const version = u32();
  if (version === undefined) return undefined;
  if (version !== HANDOFF_VERSION)
    throw new HandoffFrameError(`version ${version}, not ${HANDOFF_VERSION}`);
  const plugin = bytes();
  if (plugin === undefined) return undefined;
  if (!(HANDOFF_PLUGINS as readonly string[]).includes(plugin))
    throw new HandoffFrameError(`plugin ${JSON.stringify(plugin)} is not one of ours`);
  const count = u32();
  if (count === undefined) return undefined;
  if (count > MAX_ENV_ENTRIES) throw new HandoffFrameError(`${count} environment entries`);
  const env: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const e = bytes();
    if (e === undefined) return undefined;
    const eq = e.indexOf("=");
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  const stdin = bytes();
  if (stdin === undefined) return undefined;
  if (at !== buf.length) throw new HandoffFrameError(`${buf.length - at} bytes after the request`);
  return { plugin: plugin as HandoffPlugin, env, stdin };
}

/** The request as the shim writes it (tests, and any caller written in TypeScript). */
export function encodeRequest(req: HandoffRequest): Buffer {
  const parts: Buffer[] = [Buffer.from(HANDOFF_MAGIC, "latin1")];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    parts.push(b);
  };
  const bytes = (s: string) => {
    const b = Buffer.from(s, "utf8");
    u32(b.length);
    parts.push(b);
  };
  u32(HANDOFF_VERSION);
  bytes(req.plugin);
  const entries = Object.entries(req.env);
  u32(entries.length);
  for (const [k, v] of entries) bytes(`${k}=${v}`);
  bytes(req.stdin);
  return Buffer.concat(parts);
}

/** The daemon ran the plugin: its exit code and stdout (the line the plugin would print). */
export function encodeDone(exitCode: number, stdout: string): Buffer {
  const out = Buffer.from(stdout, "utf8");
  const head = Buffer.alloc(13);
  head.write(HANDOFF_MAGIC, 0, "latin1");
  head.writeUInt8(0, 4);
  head.writeInt32BE(exitCode, 5);
  head.writeUInt32BE(out.length, 9);
  return Buffer.concat([head, out]);
}

/** The daemon will not run it (the caller runs the plugin itself). */
export function encodeDeclined(): Buffer {
  const b = Buffer.alloc(5);
  b.write(HANDOFF_MAGIC, 0, "latin1");
  b.writeUInt8(1, 4);
  return b;
}

/** An answer as the shim reads it (tests). */
export function decodeAnswer(
  buf: Buffer,
): { declined: true } | { declined: false; exitCode: number; stdout: string } {
  if (buf.length < 5 || buf.toString("latin1", 0, 4) !== HANDOFF_MAGIC)
    throw new HandoffFrameError("malformed answer");
  if (buf.readUInt8(4) === 1) return { declined: true };
  if (buf.length < 13) throw new HandoffFrameError("malformed answer");
  const len = buf.readUInt32BE(9);
  if (buf.length !== 13 + len) throw new HandoffFrameError("malformed answer");
  return { declined: false, exitCode: buf.readInt32BE(5), stdout: buf.toString("utf8", 13) };
}
