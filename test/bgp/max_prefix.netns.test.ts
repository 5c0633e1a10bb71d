// Max-prefix against a flooding peer (RFC 4486): the real `ocelot bgpd` peers with a raw BGP
// peer (a small script written here, run in a second namespace) that announces 200,000 /24s
// against a limit of 10,000. The session is closed with Cease/1 carrying AFI/SAFI/limit, the
// peer's routes leave our kernel, the peak RSS stays far below what 200k routes would need and
// the RSS comes back near its baseline, and the peer is refused until the restart timer (5 s)
// has run, then taken back.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { kernelRoutes, type OcelotPeer, PeerLab } from "../helpers/peers.js";

const reason = netnsUnavailableReason();
const skip = skipWithReason("max-prefix against a flooding peer", reason);

const OC = "10.255.23.1";
const FL = "10.255.23.2";
const LIMIT = 10_000;
const FLOOD = 200_000;
const RESTART_S = 5;

// A raw BGP speaker: OPEN, KEEPALIVEs, then `count` /24s from 20.0.0.0 in 4096-byte UPDATEs;
// prints what it received (OPEN seen, NOTIFICATION) as one JSON line when the session closes.
const flooder = `
import * as net from "node:net";
const [host, local, countText] = process.argv.slice(2);
const count = Number(countText);
const hdr = (type, body) => {
  const b = Buffer.alloc(19 + body.length, 0xff);
  b.writeUInt16BE(19 + body.length, 16); b[18] = type; body.copy(b, 19); return b;
};
const caps = Buffer.from([2, 6, 1, 4, 0, 1, 0, 1, 2, 6, 65, 4, 0, 0, 0xfe, 0x0a]);
const open = hdr(1, Buffer.concat([Buffer.from([4, 0xfe, 0x0a, 0, 90, 10, 255, 23, 2, caps.length]), caps]));
const attrs = Buffer.from([0x40, 1, 1, 0,  0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x0a,  0x40, 3, 4, 10, 255, 23, 2]);
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
const flood = () => {
  for (const u of updates()) { if (s.destroyed) return; s.write(u); out.sent++; }
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
setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 60000).unref();
`;

interface FloodResult {
  open: boolean;
  notification: { code: number; subcode: number; data: number[] } | null;
  sent: number;
}

describe.skipIf(skip)("max-prefix against a flooding peer", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fl: Netns;
  let ocelot: OcelotPeer;
  let script: string;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("mpo");
    fl = Netns.create("mpf");
    link(oc, "oc-fl", `${OC}/30`, fl, "fl-oc", `${FL}/30`);
    script = join(lab.subdir("flooder"), "flooder.mjs");
    writeFileSync(script, flooder);
    ocelot = lab.startOcelot(oc, "ocelot", {
      asn: 64523,
      routerId: OC,
      peers: [
        {
          address: FL,
          asn: 65034,
          passive: true,
          families: ["ipv4-unicast"],
          maxPrefixes: { "ipv4-unicast": { limit: LIMIT, restartTime: RESTART_S } },
        },
      ],
      fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
    });
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    fl?.destroy();
  });

  const run = (count: number): FloodResult => {
    const [cmd, args] = fl.wrap(process.execPath, script, OC, FL, String(count));
    const r = runSync(cmd, args);
    const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
    return JSON.parse(line) as FloodResult;
  };
  const procMiB = (field: "VmRSS" | "VmHWM") => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      readFileSync(`/proc/${ocelot.pid}/status`, "utf8"),
    );
    return Number(m?.[1]) / 1024;
  };
  const ours = () => kernelRoutes(oc, 4).filter((r) => r.protocol === "201").length;

  it("closes the session with Cease/1 at the limit, keeps memory bounded, and restarts after the timer", async () => {
    // A first session with a few routes: the baseline is a speaker that has run a session.
    const warm = run(0);
    expect(warm.open).toBe(true);
    await waitFor("idle again", () => ocelot.peer(FL)?.state !== "Established");
    const baseline = procMiB("VmRSS");
    const r = run(FLOOD);
    expect(r.open).toBe(true);
    expect(r.notification).toEqual({
      code: 6,
      subcode: 1,
      data: [0, 1, 1, 0, 0, (LIMIT >> 8) & 0xff, LIMIT & 0xff],
    });
    const closedAt = Date.now();
    expect(ocelot.peer(FL)?.lastError).toMatchObject({ code: 6, subcode: 1 });
    expect(ocelot.peer(FL)?.heldDown).toEqual(["maxPrefix"]);
    expect(ocelot.log()).toMatch(/Peer is near its prefix limit/);
    await waitFor("the flooder's routes gone from our kernel", () => ours() === 0);
    await new Promise((res) => setTimeout(res, 2000));
    const peak = procMiB("VmHWM");
    const after = procMiB("VmRSS");
    console.log(
      `max-prefix: ${FLOOD} sent against ${LIMIT}: UPDATEs queued by the flooder ${r.sent}, RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB, after ${after.toFixed(1)} MiB`,
    );
    // Hang-sized bounds: 200k routes in the RIB and the kernel FIB cost well over 100 MiB here.
    expect(after - baseline).toBeLessThan(40);
    expect(peak - baseline).toBeLessThan(100);

    // Held down: refused until the restart time, then taken back.
    let tries = 0;
    await waitFor("session accepted again after the restart time", () => {
      tries++;
      return run(0).open;
    });
    const waited = (Date.now() - closedAt) / 1000;
    console.log(`max-prefix: taken back ${waited.toFixed(1)} s after Cease/1 (${tries} tries)`);
    expect(tries).toBeGreaterThan(1);
    expect(waited).toBeGreaterThanOrEqual(RESTART_S - 1);
    expect(ocelot.peer(FL)?.heldDown).toBeUndefined();
  });
});
