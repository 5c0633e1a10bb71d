// Max-prefix against a flooding peer (RFC 4486): the real `ocelot bgpd` peers with a raw BGP
// peer (test/helpers/bgp_flooder.ts, run in a second namespace) that announces 200,000 /24s
// against a limit of 10,000. The session is closed with Cease/1 carrying AFI/SAFI/limit, the
// peer's routes leave our kernel, the peak RSS stays far below what 200k routes would need and
// the RSS comes back near its baseline, and the peer is refused until the restart timer
// has run (10 s here), then taken back.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLOODER_AS, type FloodResult, flooder } from "../helpers/bgp_flooder.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { kernelRoutes, type OcelotPeer, PeerLab } from "../helpers/peers.js";

const reason = netnsUnavailableReason();
const skip = skipWithReason("max-prefix against a flooding peer", reason);

const OC = "10.255.23.1";
const FL = "10.255.23.2";
const LIMIT = 10_000;
const FLOOD = 200_000;
const RESTART_S = 10;

describe.skipIf(skip)("max-prefix against a flooding peer", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fl: Netns;
  let ocelot: OcelotPeer;
  let flood: ReturnType<typeof flooder>;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("mpo");
    fl = Netns.create("mpf");
    link(oc, "oc-fl", `${OC}/30`, fl, "fl-oc", `${FL}/30`);
    flood = flooder(lab.subdir("flooder"), fl);
    ocelot = lab.startOcelot(oc, "ocelot", {
      asn: 64523,
      routerId: OC,
      peers: [
        {
          address: FL,
          asn: FLOODER_AS,
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

  const run = (count: number): FloodResult => flood(OC, FL, count);
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
    // Held down: a connection now is refused (the probe is counted only inside the window).
    const probeAt = Date.now();
    const probe = run(0);
    if (Date.now() - closedAt < (RESTART_S - 2) * 1000) expect(probe.open).toBe(false);
    else console.log(`max-prefix: refusal probe not counted (began ${probeAt - closedAt} ms late)`);
    expect(ocelot.peer(FL)?.lastError).toMatchObject({ code: 6, subcode: 1 });
    expect(ocelot.peer(FL)?.heldDown).toEqual(["maxPrefix"]);
    expect(ocelot.log()).toMatch(/Peer is near its prefix limit/);
    await waitFor("the flooder's routes gone from our kernel", () => ours() === 0);
    await new Promise((res) => setTimeout(res, 2000));
    const peak = procMiB("VmHWM");
    const after = procMiB("VmRSS");
    console.log(
      `max-prefix: ${FLOOD} sent against ${LIMIT}: UPDATEs written before the close ${r.sent}, RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB, after ${after.toFixed(1)} MiB`,
    );
    // Hang-sized bounds: 200k routes in the RIB and the kernel FIB cost well over 100 MiB here.
    expect(after - baseline).toBeLessThan(40);
    expect(peak - baseline).toBeLessThan(100);

    // Taken back once the restart time has run.
    await waitFor("session accepted again after the restart time", () => run(0).open);
    const waited = (Date.now() - closedAt) / 1000;
    console.log(`max-prefix: taken back ${waited.toFixed(1)} s after Cease/1`);
    expect(waited).toBeGreaterThanOrEqual(RESTART_S - 1);
    expect(ocelot.peer(FL)?.heldDown).toBeUndefined();
  });
});
