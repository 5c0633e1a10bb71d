// Import ownership (issue 17: "a mesh peer announcing a block it does not hold the affinity for
// is refused"), by two real `ocelot node run` on one bridged fabric, meshed with a third Node
// whose address is BIRD 2's: a Node resource ("rogue") that is a BIRD speaker, pretending to be a
// node, in the mesh as any node is. BIRD announces its own block (affinity rogue), node1's block,
// a host route inside node1's block for an address a WorkloadEndpoint on rogue holds (borrowed,
// as Calico's nodes announce them), a host route for an address nobody holds, a block whose
// affinity is written only later, and node2's block. The nodes accept the first and the
// borrowed host route, and refuse the rest (`ocelot_bgp_routes_rejected_total{reason=NotOwned}`
// on /metrics, read with curl in the node's namespace; the kernel keeps the real owners' routes,
// read with `ip -j route`); their own blocks reach each other as always. Then the late block's
// affinity is written: it lands on both nodes from the paths they hold, with no ROUTE-REFRESH
// (BIRD's packet log) and without touching the routes already in the kernel (`ip monitor route`
// in node2's namespace sees only the new ones); a WorkloadEndpoint on rogue for the address
// nobody held lands its host route the same way; node2's block moves to rogue (its affinity
// deleted, rogue's written): BIRD's announcement of it is accepted from then on, and rogue's own
// block moved to node2 is refused from BIRD.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource } from "../../src/api/client.js";
import { IpamKeys } from "../../src/ipam/records.js";
import { parseCidr } from "../../src/lib/ip.js";
import { httpGetIn } from "../helpers/metrics.js";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type IpRoute, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run import ownership with BIRD as a Node",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const ROGUE_IP = "10.97.0.9";
const NODE_IPS = ["10.97.0.1", "10.97.0.2"];
const POOL = "10.245.0.0/16";
const N1_BLOCK = "10.245.1.0/26";
const N2_BLOCK = "10.245.2.0/26";
/** rogue's own block at first (moved to node2 at the end). */
const ROGUE_BLOCK = "10.245.5.0/26";
/** Claimed by rogue only after BIRD announced it. */
const LATE = "10.245.6.0/26";
/** node2's second block, moved to rogue. */
const MOVED = "10.245.7.0/26";
/** An address of node1's block that rogue's workload holds (borrowed). */
const BORROWED = "10.245.1.7/32";
/** An address of node1's block nobody holds. */
const FAKE = "10.245.1.9/32";
const PORT = 9093;

const birdConf = `
log "@DIR@/bird.log" all;
router id ${ROGUE_IP};
protocol device { }
protocol static s4 {
  ipv4;
${[ROGUE_BLOCK, N1_BLOCK, BORROWED, FAKE, LATE, MOVED].map((p) => `  route ${p} blackhole;`).join("\n")}
}
${NODE_IPS.map(
  (ip, i) => `
protocol bgp node${i + 1} {
  local ${ROGUE_IP} as 64512;
  neighbor ${ip} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  debug { states, packets };
  ipv4 { import none; export where source = RTS_STATIC; next hop self; };
}`,
).join("\n")}
`;

/** A pod on rogue holding address (from node1's block: IPAM borrowed it). */
const wepOnRogue = (pod: string, address: string) => ({
  apiVersion: "projectcalico.org/v3",
  kind: "WorkloadEndpoint",
  metadata: { name: `rogue-k8s-${pod}-eth0`, namespace: "default" },
  spec: {
    node: "rogue",
    pod,
    endpoint: "eth0",
    interfaceName: `ocl${pod}`,
    ipNetworks: [address],
  },
});

const asPrefix = (r: IpRoute) => (r.dst.includes("/") ? r.dst : `${r.dst}/32`);

describe.skipIf(skip)(
  "ocelot node run: import ownership toward Nodes (BIRD as a rogue Node)",
  () => {
    let lab: NodeLab;
    let bird: BirdPeer;
    let monitor: ChildProcess | undefined;
    let monitored = "";
    const keys = new IpamKeys();
    const ns = (i: number) => lab.nodes[i]?.ns as Netns;
    /** node i's BGP routes in the kernel: prefix -> gateway. */
    const learned = (i: number) =>
      Object.fromEntries(routes(ns(i), "201").map((r) => [asPrefix(r), r.gateway ?? r.type ?? ""]));
    /** ocelot_bgp_routes_rejected_total{reason=NotOwned} of node i's session to BIRD. */
    const notOwned = (i: number) => {
      const [code, text] = httpGetIn(ns(i), PORT, "/metrics");
      if (code !== 200) throw new Error(`/metrics: ${code} ${text}`);
      const line = text
        .split("\n")
        .find(
          (l) =>
            l.startsWith("ocelot_bgp_routes_rejected_total{") &&
            l.includes(`peer="${ROGUE_IP}"`) &&
            l.includes('reason="NotOwned"'),
        );
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    const refreshes = () => (bird.log().match(/Got ROUTE-REFRESH/g) ?? []).length;
    const logs = () => lab.nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");

    beforeAll(async () => {
      lab = new NodeLab("importown");
      await putPool(lab.store, "pods", POOL, { blockSize: 26 });
      // The rogue Node: a BIRD speaker at an address the mesh peers with, as any node's.
      await lab.apply("Node", "rogue", { bgp: { ipv4Address: `${ROGUE_IP}/24` } });
      await putAffinity(lab.store, "node1", N1_BLOCK);
      await putAffinity(lab.store, "node2", N2_BLOCK);
      await putAffinity(lab.store, "node2", MOVED);
      await putAffinity(lab.store, "rogue", ROGUE_BLOCK);
      // A pod on rogue holding an address of node1's block (IPAM borrowed it).
      await applyResource(lab.store, wepOnRogue("borrower", BORROWED));
      const tor = lab.fabric("iow", ROGUE_IP, NODE_IPS);
      bird = lab.peers.startBird(tor, "bird", birdConf);
      await lab.start(() => ["--metrics-address", `127.0.0.1:${PORT}`]);
    });

    afterAll(async () => {
      if (monitor?.pid !== undefined && monitor.exitCode === null) monitor.kill("SIGTERM");
      await lab?.close();
    });

    it("accepts the Node's own block and its borrowed host route, refuses the rest and counts it", async () => {
      await waitFor(
        "BIRD's block and borrowed address on both nodes, and the nodes' blocks",
        () =>
          [0, 1].every((i) => {
            const l = learned(i);
            return l[ROGUE_BLOCK] === ROGUE_IP && l[BORROWED] === ROGUE_IP;
          }) &&
          learned(1)[N1_BLOCK] === NODE_IPS[0] &&
          learned(0)[N2_BLOCK] === NODE_IPS[1] &&
          learned(0)[MOVED] === NODE_IPS[1],
        60_000,
        200,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}: ${JSON.stringify([learned(0), learned(1)])}\n${logs()}`,
        );
      });
      // The four it does not own, refused by both (node1's own block from BIRD on node1 too).
      await waitFor(
        "4 refusals counted on each node",
        () => notOwned(0) === 4 && notOwned(1) === 4,
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${notOwned(0)} ${notOwned(1)}`);
      });
      // node1: its own block stays its blackhole (protocol 202), nothing of BIRD's inside it but the
      // borrowed address; node2: node1's block only via node1 (one next hop, not BIRD's too).
      expect(learned(0)).toEqual({
        [ROGUE_BLOCK]: ROGUE_IP,
        [BORROWED]: ROGUE_IP,
        [N2_BLOCK]: NODE_IPS[1],
        [MOVED]: NODE_IPS[1],
      });
      expect(learned(1)).toEqual({
        [ROGUE_BLOCK]: ROGUE_IP,
        [BORROWED]: ROGUE_IP,
        [N1_BLOCK]: NODE_IPS[0],
      });
      expect(routes(ns(1), "201").find((r) => r.dst === N1_BLOCK)).toMatchObject({
        gateway: NODE_IPS[0],
      });
    });

    it("a block claimed after its announcement: lands on both nodes from the kept paths, no ROUTE-REFRESH, nothing else touched", async () => {
      // `ip monitor route` in node2: what changes in its kernel from here on.
      monitor = spawn("ip", ["netns", "exec", ns(1).name, "ip", "-4", "monitor", "route"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      monitor.stdout?.on("data", (d: Buffer) => {
        monitored += d.toString();
      });
      await new Promise((r) => setTimeout(r, 500));
      const before = refreshes();
      const t0 = performance.now();
      await putAffinity(lab.store, "rogue", LATE);
      await waitFor(
        "the late block on both nodes",
        () => [0, 1].every((i) => learned(i)[LATE] === ROGUE_IP),
        60_000,
        50,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}: ${JSON.stringify([learned(0), learned(1)])}\n${logs()}`,
        );
      });
      const ms = Math.round(performance.now() - t0);
      console.log(
        `late block: in both kernels ${ms} ms after its affinity was written (load ${readFileSync("/proc/loadavg", "utf8").trim()})`,
      );
      // The change logged as the ownership's, in place (the log arrives through a pipe).
      await waitFor(
        "both nodes to log the change as the import ownership's, with no ROUTE-REFRESH",
        () =>
          lab.nodes.every((n) =>
            /"field":"importOwnership"[^\n]*no ROUTE-REFRESH/.test(n.daemon?.log ?? ""),
          ),
        30_000,
        50,
      );
      // BIRD logs a packet within milliseconds: a second is plenty for a ROUTE-REFRESH to show.
      await new Promise((r) => setTimeout(r, 1000));
      expect(refreshes()).toBe(before);
      // The refusals stay counted (a counter), none added.
      expect([notOwned(0), notOwned(1)]).toEqual([4, 4]);
      // Only the new route changed node2's kernel: the accepted ones were not withdrawn or re-added.
      // Routes inside the pool (IPv4 only: the kernel's own IPv6 link-local routes may come
      // up meanwhile), added or deleted.
      const lines = monitored.split("\n").filter((l) => l.includes("10.245."));
      expect(lines.some((l) => l.startsWith(LATE))).toBe(true);
      expect(
        lines.filter((l) => !l.startsWith(LATE)),
        monitored,
      ).toEqual([]);
      expect(POOL.startsWith("10.245.")).toBe(true);
    });

    it("an address borrowed after its announcement: lands when its WorkloadEndpoint arrives", async () => {
      await applyResource(lab.store, wepOnRogue("late", FAKE));
      await waitFor(
        "the late borrowed address on both nodes",
        () => [0, 1].every((i) => learned(i)[FAKE] === ROGUE_IP),
        60_000,
        50,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}: ${JSON.stringify([learned(0), learned(1)])}\n${logs()}`,
        );
      });
      expect(refreshes()).toBe(0);
    });

    it("a block moving between nodes moves the acceptance", async () => {
      // node2's second block to rogue: node2 stops originating it, BIRD's announcement lands.
      await lab.store.delete(keys.affinity("node2", parseCidr(MOVED)));
      await putAffinity(lab.store, "rogue", MOVED);
      // rogue's own block to node2: BIRD's announcement is refused from now on.
      await lab.store.delete(keys.affinity("rogue", parseCidr(ROGUE_BLOCK)));
      await putAffinity(lab.store, "node2", ROGUE_BLOCK);
      await waitFor(
        "the moved blocks' routes",
        () =>
          learned(0)[MOVED] === ROGUE_IP &&
          learned(1)[MOVED] === ROGUE_IP &&
          learned(0)[ROGUE_BLOCK] === NODE_IPS[1] &&
          learned(1)[ROGUE_BLOCK] === undefined,
        60_000,
        100,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}: ${JSON.stringify([learned(0), learned(1)])}\n${logs()}`,
        );
      });
      // BIRD's announcement of the block rogue lost is one more refusal on each node.
      await waitFor(
        "5 refusals on each node",
        () => notOwned(0) === 5 && notOwned(1) === 5,
        60_000,
        200,
      );
      expect(learned(0)).toEqual({
        [ROGUE_BLOCK]: NODE_IPS[1],
        [BORROWED]: ROGUE_IP,
        [FAKE]: ROGUE_IP,
        [N2_BLOCK]: NODE_IPS[1],
        [LATE]: ROGUE_IP,
        [MOVED]: ROGUE_IP,
      });
    });
  },
);
