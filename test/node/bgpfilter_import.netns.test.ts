// BGPFilter operations on import and Calico's route priorities, by the real `ocelot node run`
// against two BIRD 2 in their own namespaces (the embedded store), seen on every side:
// - BIRD "tor" (eBGP, AS 65010) sends three prefixes: PLAIN, EDITED tagged (65010,7) and PRIO
//   tagged (65010,9). The node's BGPFilter on that peer: for (65010,7) addCommunity (64512,100)
//   and (64512,5,6) and prependASPath 64700 64701 (Calico's BIRD import statements
//   `bgp_community.add`, `bgp_large_community.add`, `bgp_path.prepend`); for (65010,9)
//   setPriority 300 (`krt_metric = 300`);
// - `ocelot routes` shows EDITED with the changes and PRIO with metric 300; the kernel (`ip -j
//   route`) holds PRIO at metric 300 and the others at the normal 1024;
// - BIRD "ibgp" (iBGP, AS 64512, a filter exporting what the node learned) receives EDITED with
//   the changes, PRIO with LOCAL_PREF 2^31-1 - 300 and PLAIN with 2147482623 (the normal 1024),
//   as a Calico node sends them;
// - setPriority 300 -> 500 applied live: the kernel route moves to metric 500 (nothing left at
//   300), BIRD gets the new LOCAL_PREF, and neither session is reset; the edit rule removed: the
//   route goes back to as received.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryStatus, type RoutesSnapshot } from "../../src/bgp/status.js";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus } from "./harness.js";
import { ibgpBirdConf, NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPFilter import operations and route priorities with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.91.0.1";
const BIRD_IP = "10.91.0.2";
const NODE_IBGP_IP = "10.90.0.1";
const BIRD_IBGP_IP = "10.90.0.2";
const BIRD_AS = 65010;
const PLAIN = "10.97.1.0/24";
const EDITED = "10.97.2.0/24";
const PRIO = "10.97.3.0/24";

const torConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${PLAIN} blackhole; route ${EDITED} blackhole; route ${PRIO} blackhole; }
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 {
    import none;
    export filter {
      if source != RTS_STATIC then reject;
      if net = ${EDITED} then bgp_community.add((65010, 7));
      if net = ${PRIO} then bgp_community.add((65010, 9));
      accept;
    };
  };
}
`;

interface Peer {
  address: string;
  state: string;
  establishedTransitions: number;
}

interface KernelRoute {
  dst: string;
  metric?: number;
  protocol?: string;
}

describe.skipIf(skip)(
  "ocelot node run: BGPFilter addCommunity/prependASPath/setPriority on import, route priorities (BIRD)",
  () => {
    let lab: NodeLab;
    let tor: BirdPeer;
    let ibgp: BirdPeer;
    const socket = () => lab.socket();
    const ns = () => lab.nodes[0]?.ns as Netns;
    /** The node's BGP routes in the kernel: prefix -> metrics (more than one: a leftover). */
    const kernel = () => {
      const m: Record<string, number[]> = {};
      for (const r of ns().ipJson<KernelRoute[]>("-4", "route", "show", "proto", "201")) {
        const l = m[r.dst] ?? [];
        l.push(r.metric ?? 0);
        m[r.dst] = l;
      }
      return m;
    };
    const locRib = async () =>
      new Map(
        (await queryStatus<RoutesSnapshot>(socket(), "routes")).routes.map((r) => [r.prefix, r]),
      );
    const inIbgp = (prefix: string) =>
      ibgp.cmd("show", "route", "protocol", "inode", "for", prefix, "all");
    const why = () => `${lab.nodes[0]?.daemon?.log}\n${tor.log()}\n${ibgp.log()}`;
    const transitions = () =>
      Object.fromEntries(
        peerStatus<Peer>(socket()).map((p) => [p.address, p.establishedTransitions]),
      );
    const editRule = {
      action: "Accept",
      communities: { values: ["65010:7"] },
      operations: [
        { addCommunity: { value: "64512:100" } },
        { addCommunity: { value: "64512:5:6" } },
        { prependASPath: { prefix: [64700, 64701] } },
      ],
    };
    const prioRule = (p: number) => ({
      action: "Accept",
      communities: { values: ["65010:9"] },
      operations: [{ setPriority: { value: p } }],
    });
    const torFilter = (importV4: unknown[]) => lab.apply("BGPFilter", "tor", { importV4 });

    beforeAll(async () => {
      lab = new NodeLab("bgpimport");
      await lab.apply("BGPConfiguration", "default", {
        nodeToNodeMeshEnabled: false,
        asNumber: 64512,
      });
      await torFilter([editRule, prioRule(300)]);
      // What the node learned goes on to the iBGP BIRD (a BGPPeer gets only our originations
      // by default).
      await lab.apply("BGPFilter", "ib", {
        exportV4: [{ action: "Accept", source: "RemotePeers" }],
      });
      await lab.apply("BGPPeer", "tor", {
        peerIP: BIRD_IP,
        asNumber: BIRD_AS,
        filters: ["tor"],
        keepaliveTime: "3s",
      });
      await lab.apply("BGPPeer", "ibgp", {
        peerIP: BIRD_IBGP_IP,
        asNumber: 64512,
        filters: ["ib"],
        keepaliveTime: "3s",
        sourceAddress: "None",
      });
      const node = lab.node("bin", "bi-node", NODE_IP);
      tor = lab.birdOnLink(node, "eth0", NODE_IP, "bit", BIRD_IP, "tor", torConf);
      const ibgpConf = ibgpBirdConf(BIRD_IBGP_IP, NODE_IBGP_IP);
      ibgp = lab.birdOnLink(node, "eth1", NODE_IBGP_IP, "bii", BIRD_IBGP_IP, "ibgp", ibgpConf);
      await lab.start();
    });

    afterAll(async () => {
      await lab?.close();
    });

    it("the kernel: PRIO at metric 300 (setPriority), the others at the normal 1024", async () => {
      const want = { [PLAIN]: [1024], [EDITED]: [1024], [PRIO]: [300] };
      await waitFor(
        "three routes from BIRD in the kernel at their metrics",
        () => JSON.stringify(kernel()) === JSON.stringify(want),
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(kernel())}\n${why()}`);
      });
      console.log(`ip -j route proto 201: ${JSON.stringify(kernel())}`);
    });

    it("ocelot routes: EDITED with the communities added and the AS path prepended; PRIO with metric 300", async () => {
      const rib = await locRib();
      const e = rib.get(EDITED);
      console.log(`ocelot routes ${EDITED}: ${JSON.stringify(e)}`);
      expect(e?.best.asPath).toBe("64700 64701 65010");
      expect(e?.best.communities).toEqual(["65010:7", "64512:100"]);
      expect(e?.best.largeCommunities).toEqual(["64512:5:6"]);
      expect(e?.metric).toBeUndefined();
      expect(rib.get(PLAIN)?.best.asPath).toBe("65010");
      expect(rib.get(PLAIN)?.best.communities).toEqual([]);
      expect(rib.get(PRIO)?.metric).toBe(300);
      // `ocelot routes PREFIX`: the path as received beside it.
      const one = await queryStatus<{
        paths: { asPath: string; received?: { asPath: string; communities: string[] } }[];
      }>(socket(), "route", 5000, { prefix: EDITED });
      expect(one.paths[0]?.asPath).toBe("64700 64701 65010");
      expect(one.paths[0]?.received).toMatchObject({ asPath: "65010", communities: ["65010:7"] });
    });

    it("passed on to the iBGP BIRD with the changes, and LOCAL_PREF 2^31-1 - priority (2147482623 for the normal 1024)", async () => {
      const shown = await waitFor(
        `${EDITED} from the node in BIRD's iBGP session`,
        () => {
          const r = inIbgp(EDITED);
          return r.includes("BGP.as_path") ? r : undefined;
        },
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${inIbgp(EDITED)}\n${why()}`);
      });
      console.log(`BIRD: show route protocol inode for ${EDITED} all\n${shown}`);
      expect(shown).toMatch(/BGP\.as_path: 64700 64701 65010\s*\n/);
      expect(shown).toMatch(/BGP\.community: \(65010,7\) \(64512,100\)\s*\n/);
      expect(shown).toMatch(/BGP\.large_community: \(64512, 5, 6\)\s*\n/);
      expect(shown).toMatch(/BGP\.local_pref: 2147482623\s*\n/);
      const prio = await waitFor(
        `${PRIO} in BIRD's iBGP session`,
        () => (inIbgp(PRIO).includes("BGP.local_pref") ? inIbgp(PRIO) : undefined),
        60_000,
        200,
      );
      console.log(`BIRD: show route protocol inode for ${PRIO} all\n${prio}`);
      expect(prio).toMatch(/BGP\.local_pref: 2147483347\s*\n/);
      expect(inIbgp(PLAIN)).toMatch(/BGP\.local_pref: 2147482623\s*\n/);
      expect(inIbgp(PLAIN)).toMatch(/BGP\.as_path: 65010\s*\n/);
    });

    it("setPriority 300 -> 500 live: the kernel route moves to metric 500 with nothing left at 300, BIRD gets the new LOCAL_PREF, no session reset", async () => {
      const before = transitions();
      await torFilter([editRule, prioRule(500)]);
      await waitFor(
        `${PRIO} at metric 500 only`,
        () => JSON.stringify(kernel()[PRIO]) === "[500]",
        60_000,
        100,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(kernel())}\n${why()}`);
      });
      await waitFor(
        `${PRIO} with LOCAL_PREF 2^31-1 - 500 in BIRD`,
        () => /BGP\.local_pref: 2147483147\s*\n/.test(inIbgp(PRIO)),
        60_000,
        200,
      );
      expect(kernel()).toEqual({ [PLAIN]: [1024], [EDITED]: [1024], [PRIO]: [500] });
      expect(transitions()).toEqual(before);
      expect(tor.cmd("show", "protocols", "node")).toContain("Established");
    });

    it("the edit rule removed live: the route goes back to as received, here and in BIRD", async () => {
      await torFilter([prioRule(500)]);
      await waitFor(
        `${EDITED} as received in BIRD's iBGP session`,
        () => /BGP\.as_path: 65010\s*\n/.test(inIbgp(EDITED)),
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${inIbgp(EDITED)}\n${why()}`);
      });
      expect(inIbgp(EDITED)).toMatch(/BGP\.community: \(65010,7\)\s*\n/);
      expect(inIbgp(EDITED)).not.toContain("BGP.large_community");
      const e = (await locRib()).get(EDITED);
      expect(e?.best.asPath).toBe("65010");
      expect(e?.best.communities).toEqual(["65010:7"]);
    });
  },
);
