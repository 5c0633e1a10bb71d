// A raw BGP peer that floods: a small Node.js script (written to a file and run inside a
// network namespace, so it needs nothing of ours) that opens an eBGP session as AS 65034 from
// `local`, then announces `count` /24s from 20.0.0.0 in 4096-byte UPDATEs with `local` as next
// hop, and prints what it saw (OPEN, NOTIFICATION) as one JSON line when the session closes.
// Used by test/bgp/max_prefix.netns.test.ts and bench/max_prefix.ts.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runSync } from "./limits.js";
import type { Netns } from "./netns.js";

export const FLOODER_AS = 65034;

const script = `
import * as net from "node:net";
const [host, local, countText] = process.argv.slice(2);
const count = Number(countText);
const ip = local.split(".").map(Number);
const hdr = (type, body) => {
  const b = Buffer.alloc(19 + body.length, 0xff);
  b.writeUInt16BE(19 + body.length, 16); b[18] = type; body.copy(b, 19); return b;
};
const caps = Buffer.from([2, 6, 1, 4, 0, 1, 0, 1, 2, 6, 65, 4, 0, 0, 0xfe, 0x0a]);
const open = hdr(1, Buffer.concat([Buffer.from([4, 0xfe, 0x0a, 0, 90, ...ip, caps.length]), caps]));
const attrs = Buffer.from([0x40, 1, 1, 0,  0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x0a,  0x40, 3, 4, ...ip]);
function* updates() {
  const per = Math.floor((4096 - 23 - attrs.length) / 4);
  for (let i = 0; i < count; i += per) {
    const n = Math.min(per, count - i);
    const nlri = Buffer.alloc(n * 4);
    for (let k = 0; k < n; k++) { nlri[k * 4] = 24; nlri.writeUIntBE(0x140000 + i + k, k * 4 + 1, 3); }
    const body = Buffer.alloc(4 + attrs.length);
    body.writeUInt16BE(0, 0); body.writeUInt16BE(attrs.length, 2); attrs.copy(body, 4);
    yield hdr(2, Buffer.concat([body, nlri]));
  }
}
const out = { open: false, notification: null, sent: 0 };
const s = net.connect({ host, port: 179, localAddress: local });
s.on("error", () => {});
let buf = Buffer.alloc(0);
let flooding = false;
// Written as the socket drains, so a peer that closes stops the flood (and "sent" is honest).
const gen = updates();
const flood = () => {
  for (let u = gen.next(); !u.done; u = gen.next()) {
    if (s.destroyed) return;
    out.sent++;
    if (!s.write(u.value)) { s.once("drain", flood); return; }
  }
};
s.on("connect", () => s.write(open));
s.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  while (buf.length >= 19) {
    const len = buf.readUInt16BE(16);
    if (buf.length < len) break;
    const m = buf.subarray(0, len); buf = buf.subarray(len);
    if (m[18] === 1) { out.open = true; s.write(hdr(4, Buffer.alloc(0))); }
    if (m[18] === 4 && !flooding) { flooding = true; if (count > 0) flood(); else s.end(); }
    if (m[18] === 3) out.notification = { code: m[19], subcode: m[20], data: [...m.subarray(21)] };
  }
});
s.on("close", () => { console.log(JSON.stringify(out)); process.exit(0); });
setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 120000).unref();
`;

export interface FloodResult {
  open: boolean;
  notification: { code: number; subcode: number; data: number[] } | null;
  /** UPDATEs handed to the socket before the peer closed it. */
  sent: number;
}

/** Writes the script into dir; returns a runner (inside ns) that waits for the session's end. */
export function flooder(
  dir: string,
  ns: Netns,
): (target: string, local: string, count: number) => FloodResult {
  const file = join(dir, "flooder.mjs");
  writeFileSync(file, script);
  return (target, local, count) => {
    const [cmd, args] = ns.wrap(process.execPath, file, target, local, String(count));
    const r = runSync(cmd, args);
    const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
    if (!line.startsWith("{")) throw new Error(`flooder printed nothing: ${r.stderr}`);
    return JSON.parse(line) as FloodResult;
  };
}
