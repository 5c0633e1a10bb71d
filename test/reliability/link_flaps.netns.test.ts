// Peer flaps in the network (issue 17, reliability): the real `ocelot bgpd` in a namespace peers
// with two BIRDs, each in its own namespace behind its own veth. One session is broken again and
// again, in turn by its link going down (our veth set down: the link watch drops the session at
// once and holds it down until the link is up; before it, the hold timer did), by TCP resets (the peer's kernel answers our segments with RST: iptables REJECT
// --reject-with tcp-reset), by a peer that falls silent (every packet dropped both ways until
// our 3 s hold timer fires) and by the peer's NOTIFICATION (BIRD's `disable`: Cease,
// Administrative Shutdown; it refuses the session until `enable`). After each: the peer's route has left our kernel; once the fault is
// lifted the session comes back by itself and the route is in the kernel again. Damping: our
// SYNs while the peer is unreachable are counted by the peer's iptables (never a tight loop),
// and the session comes up exactly once per fault. The other session is never
// reset, keeps its route, and bgpd's open fds and RSS come back to their baseline (printed).
// Then a link blip shorter than the hold time: the kernel drops our route with the link, the link
// watch resets the session, and session and route are back once the link is up.
// 3 faults of each kind per suite run (12 faults, about 80 s; 10 of each, 40 faults, took 200-230 s
// of the suite's 25 min); 200 under OCELOT_SOAK=1 (`npm run test:soak`);
// OCELOT_FLAPS=n sets the count; OCELOT_SOAK_MINUTES=m bounds the loop in time: no new fault is
// started after m minutes, the faults done are counted and printed with the shortfall, and every
// assertion holds for the faults done.
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  closePeerLab,
  kernelRoutes,
  type OcelotPeer,
  openPeerTrio,
  type PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("peer flaps in the network", reason);

const EACH = Number(process.env.OCELOT_FLAPS ?? (process.env.OCELOT_SOAK === "1" ? 200 : 3));
const BOUND_MS = Number(process.env.OCELOT_SOAK_MINUTES ?? 0) * 60_000;
const OC1 = "10.255.41.1";
const B1 = "10.255.41.2";
const OC2 = "10.255.42.1";
const B2 = "10.255.42.2";
const OC_AS = 64541;

function birdConf(id: string, local: string, peer: string, as: number, route: string): string {
  return `
log "@DIR@/bird.log" { warning, error, auth, fatal, bug };
router id ${id};
protocol device { }
protocol static s4 { ipv4; route ${route} blackhole; }
protocol bgp oc {
  local ${local} as ${as};
  neighbor ${peer} as ${OC_AS};
  passive on;
  hold time 3; keepalive time 1;
  error wait time 1, 2;
  ipv4 { import none; export where source = RTS_STATIC; };
}
`;
}

describe.skipIf(skip)("peer flaps in the network", () => {
  let lab: PeerLab;
  let oc: Netns;
  let b1: Netns;
  let b2: Netns;
  let ocelot: OcelotPeer;
  let bird1: BirdPeer;

  beforeAll(() => {
    ({ lab, oc, b1, b2 } = openPeerTrio(
      "lfo",
      ["lf1", `${OC1}/30`, `${B1}/30`],
      ["lf2", `${OC2}/30`, `${B2}/30`],
    ));
    bird1 = lab.startBird(b1, "bird1", birdConf(B1, B1, OC1, 65041, "10.77.1.0/24"));
    lab.startBird(b2, "bird2", birdConf(B2, B2, OC2, 65042, "10.77.2.0/24"));
    // Counts our SYNs to the flapping peer (a rule with no target only counts).
    b1.exec("iptables", "-I", "INPUT", "1", "-s", OC1, "-p", "tcp", "--syn");
    ocelot = lab.startOcelot(oc, "ocelot", {
      asn: OC_AS,
      routerId: OC1,
      peers: [
        { address: B1, asn: 65041, holdTime: 3, connectRetryTime: 1 },
        { address: B2, asn: 65042, holdTime: 3, connectRetryTime: 1 },
      ],
      gracefulRestart: { enabled: false },
      fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
    });
  });

  afterAll(() => {
    closePeerLab(lab, oc, b1, b2);
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, 4).some((r) => r.dst === dst && r.protocol === "201");
  const syns = (): number => {
    const out = b1.exec("iptables", "-nvxL", "INPUT", "1");
    return Number(out.trim().split(/\s+/)[0]);
  };
  const fds = () => readdirSync(`/proc/${ocelot.pid}/fd`).length;
  const rssMiB = () =>
    Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${ocelot.pid}/status`, "utf8"))?.[1]) /
    1024;

  // A limit for a hang, sized by the count: a fault takes about 8 s (the suite's 300 s default
  // ended the soak's 200 per kind, and even 30 per kind, before they were done).
  it(`${EACH} link-downs, ${EACH} TCP resets, ${EACH} silences and ${EACH} NOTIFICATIONs of one session: routes follow, damped, the other session untouched`, {
    timeout: BOUND_MS > 0 ? Math.min(EACH * 3 * 60_000, BOUND_MS + 10 * 60_000) : EACH * 3 * 60_000,
  }, async () => {
    await ocelot.established(B1, 60_000);
    await ocelot.established(B2, 60_000);
    await waitFor(
      "both routes in our kernel",
      () => inKernel("10.77.1.0/24") && inKernel("10.77.2.0/24"),
    );
    const steadyBefore = ocelot.peer(B2)?.establishedTransitions as number;
    const flapBefore = ocelot.peer(B1)?.establishedTransitions as number;

    const modes = ["link", "rst", "silent", "notify"] as const;
    const fault: Record<(typeof modes)[number], { apply(): void; lift(): void }> = {
      link: {
        apply: () => oc.ip("link", "set", "oc-b1", "down"),
        lift: () => oc.ip("link", "set", "oc-b1", "up"),
      },
      rst: {
        apply: () =>
          b1.exec(
            "iptables",
            "-I",
            "INPUT",
            "2",
            "-s",
            OC1,
            "-p",
            "tcp",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
          ),
        lift: () =>
          b1.exec(
            "iptables",
            "-D",
            "INPUT",
            "-s",
            OC1,
            "-p",
            "tcp",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
          ),
      },
      // The peer closes the session with a NOTIFICATION (BIRD's `disable`: Cease, Administrative
      // Shutdown) and refuses it until it is enabled again.
      notify: {
        apply: () => bird1.cmd("disable", "oc"),
        lift: () => bird1.cmd("enable", "oc"),
      },
      silent: {
        apply: () => {
          b1.exec("iptables", "-I", "INPUT", "2", "-s", OC1, "-j", "DROP");
          b1.exec("iptables", "-I", "OUTPUT", "1", "-d", OC1, "-j", "DROP");
        },
        lift: () => {
          b1.exec("iptables", "-D", "INPUT", "-s", OC1, "-j", "DROP");
          b1.exec("iptables", "-D", "OUTPUT", "-d", OC1, "-j", "DROP");
        },
      },
    };
    const stats: Record<string, { down: number[]; back: number[]; synsPerS: number[] }> = {};
    for (const m of modes) stats[m] = { down: [], back: [], synsPerS: [] };
    let fdBase = 0;
    let rssBase = 0;
    const total = EACH * modes.length;
    const t0 = performance.now();
    let done = 0;
    for (let i = 0; i < total; i++) {
      if (BOUND_MS > 0 && performance.now() - t0 > BOUND_MS && i >= modes.length * 3) {
        console.log(
          `link flaps: time bound of ${BOUND_MS / 60_000} min reached after ${i} of ${total} faults`,
        );
        break;
      }
      const mode = modes[i % modes.length] as (typeof modes)[number];
      const st = stats[mode] as (typeof stats)[string];
      await ocelot.established(B1, 60_000);
      await waitFor(`route back before ${mode} ${i}`, () => inKernel("10.77.1.0/24"), 60_000, 50);
      if (i === Math.min(modes.length * 2, total - modes.length)) {
        fdBase = fds();
        rssBase = rssMiB();
      }
      const tFault = performance.now();
      fault[mode].apply();
      try {
        await waitFor(
          `session down after ${mode} ${i}`,
          () => ocelot.peer(B1)?.state !== "Established",
          60_000,
          50,
        );
        st.down.push(performance.now() - tFault);
        // The peer's NOTIFICATION is what ended it: Cease (6).
        if (mode === "notify")
          expect(ocelot.peer(B1)?.lastError?.code, `Cease after notify ${i}`).toBe(6);
        // A link down is the link watch's (held down by "link"), not the hold timer's.
        if (mode === "link")
          expect(ocelot.peer(B1)?.heldDown, `held after link ${i}`).toEqual(["link"]);
        // Right after the session is down, our route through it is gone.
        await waitFor(
          `route removed after ${mode} ${i}`,
          () => !inKernel("10.77.1.0/24"),
          60_000,
          50,
        );
        // Hold the fault a little longer: our reconnects while the peer is unreachable are counted.
        const s0 = syns();
        const hold0 = performance.now();
        await new Promise((r) => setTimeout(r, 2000));
        st.synsPerS.push((syns() - s0) / ((performance.now() - hold0) / 1000));
      } finally {
        fault[mode].lift();
      }
      const tLift = performance.now();
      await ocelot.established(B1, 60_000);
      await waitFor(`route back after ${mode} ${i}`, () => inKernel("10.77.1.0/24"), 60_000, 50);
      st.back.push(performance.now() - tLift);
      expect(ocelot.peer(B2)?.establishedTransitions, `the other session after ${mode} ${i}`).toBe(
        steadyBefore,
      );
      done = i + 1;
      if (done % 30 === 0)
        console.log(
          `link flaps: ${done}/${total} faults after ${Math.round((performance.now() - t0) / 1000)} s; fds ${fds()}; RSS ${rssMiB().toFixed(1)} MiB; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
        );
    }
    const ms = performance.now() - t0;
    await waitFor("fds back to the baseline", () => fds() <= fdBase, 60_000, 200).catch(() => {});
    const fdEnd = fds();
    const rssEnd = rssMiB();
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1] ?? 0;
    const max = (a: number[]) => Math.max(...a);
    for (const m of modes) {
      const st = stats[m] as (typeof stats)[string];
      console.log(
        `link flaps: ${m} x${st.down.length}: down after median ${Math.round(med(st.down))} ms (max ${Math.round(max(st.down))}), back after median ${Math.round(med(st.back))} ms (max ${Math.round(max(st.back))}), SYNs/s while unreachable max ${max(st.synsPerS).toFixed(1)}`,
      );
    }
    console.log(
      `link flaps: ${done} of ${total} faults in ${Math.round(ms / 1000)} s; bgpd fds ${fdBase} -> ${fdEnd}; RSS ${rssBase.toFixed(1)} -> ${rssEnd.toFixed(1)} MiB; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    );
    // Damping: with ConnectRetryTime 1 s, never more than a few SYNs a second (retransmissions
    // included) while the peer cannot be reached; a tight loop would send hundreds.
    for (const m of modes)
      expect(max((stats[m] as (typeof stats)[string]).synsPerS), m).toBeLessThan(4);
    expect(ocelot.peer(B1)?.establishedTransitions).toBe(flapBefore + done);
    expect(ocelot.peer(B2)?.establishedTransitions).toBe(steadyBefore);
    expect(ocelot.peer(B2)?.state).toBe("Established");
    expect(inKernel("10.77.2.0/24")).toBe(true);
    expect(fdEnd, "bgpd's open file descriptors").toBeLessThanOrEqual(fdBase);
    expect(rssEnd - rssBase, "bgpd's RSS growth in MiB").toBeLessThan(64);
    expect(bird1.state("oc")).toBe("Established");
  });

  it("a link blip shorter than the hold time: the session is reset with the link, session and route come back", async () => {
    await ocelot.established(B1, 60_000);
    await waitFor("route in", () => inKernel("10.77.1.0/24"), 60_000, 50);
    const before = ocelot.peer(B1)?.establishedTransitions;
    oc.ip("link", "set", "oc-b1", "down");
    // The kernel removes routes through a link that goes down (ours included).
    const gone = !inKernel("10.77.1.0/24");
    await new Promise((r) => setTimeout(r, 1000));
    oc.ip("link", "set", "oc-b1", "up");
    const t0 = performance.now();
    await waitFor("the route back in the kernel", () => inKernel("10.77.1.0/24"), 60_000, 50);
    const ms = performance.now() - t0;
    const same = ocelot.peer(B1)?.establishedTransitions === before;
    console.log(
      `link blip of 1 s: route removed by the kernel: ${gone}; back ${Math.round(ms)} ms after link up; session ${same ? "kept" : "reset"}`,
    );
    expect(gone).toBe(true);
    // The link watch dropped the session with the link (before it, the session was kept).
    expect(same).toBe(false);
    await ocelot.established(B1, 60_000);
    expect(ocelot.peer(B1)?.establishedTransitions).toBe((before as number) + 1);
  });
});
