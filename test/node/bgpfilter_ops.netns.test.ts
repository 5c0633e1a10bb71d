// BGPFilter rules that read and change the path, by the real `ocelot node run` against BIRD 2 in
// its own namespace (eBGP, the embedded store), seen from both sides:
// - import, `communities`: BIRD tags one of its two prefixes with (65010,666); the node's
//   BGPFilter rejects routes carrying it (Calico's `(65010, 666) ~ bgp_community`): the other
//   prefix reaches the node's kernel under protocol 201, the tagged one never does;
// - export, `operations`: the node's serviceClusterIPs range (an origination it sends to eBGP)
//   goes out with addCommunity (a standard and a large community) and prependASPath, as BIRD's
//   `bgp_community.add` / `bgp_large_community.add` / `bgp_path.prepend`; read on BIRD's side
//   with `birdc show route ... all`: BGP.as_path 64512 64600 64601 (the node's AS prepended after
//   the filter, as BIRD does), BGP.community (64512,77), BGP.large_community (64512, 1, 2); the
//   serviceExternalIPs range, matched by no rule, arrives unchanged (AS path 64512, no
//   communities);
// - peerType and setPriority: a second BIRD (its own link), iBGP, with the same filter: only there the
//   serviceExternalIPs range arrives with LOCAL_PREF 2147483391 (2^31-1 - 256, Calico's encoding
//   of setPriority 256); over eBGP it arrives unchanged;
// - a changed filter (accept AS paths beginning 65010 65099, reject the rest: Calico's
//   `bgp_path ~ [= 65010 65099 * =]`) is applied live: the prefixes swap in the node's kernel.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus, routes } from "./harness.js";
import { ibgpBirdConf, NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPFilter path rules with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.93.0.1";
const BIRD_IP = "10.93.0.2";
/** A second BIRD on its own link: an iBGP session (AS 64512, the node's), the same filter. */
const NODE_IBGP_IP = "10.92.0.1";
const BIRD_IBGP_IP = "10.92.0.2";
const BIRD_AS = 65010;
const PLAIN = "10.98.1.0/24";
const TAGGED = "10.98.2.0/24";
const CLUSTER_IPS = "10.96.0.0/16";
const EXTERNAL_IPS = "198.51.100.0/24";

// BIRD sends TAGGED with community (65010,666) and AS path 65010 65099, PLAIN with 65010 only.
const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${PLAIN} blackhole; route ${TAGGED} blackhole; }
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 {
    import all;
    export filter {
      if source != RTS_STATIC then reject;
      if net = ${TAGGED} then { bgp_community.add((65010, 666)); bgp_path.prepend(65099); }
      accept;
    };
  };
}
`;

interface Peer {
  address: string;
  state: string;
}

describe.skipIf(skip)(
  "ocelot node run: BGPFilter communities, asPathPrefix and operations (BIRD)",
  () => {
    let lab: NodeLab;
    let bird: BirdPeer;
    let ibgp: BirdPeer;
    const socket = () => lab.socket();
    const learned = () => routes(lab.nodes[0]?.ns as Netns, "201").map((r) => r.dst);
    const why = () => `${lab.nodes[0]?.daemon?.log}\n${bird.log()}`;
    const filter = (importV4: unknown[]) =>
      lab.apply("BGPFilter", "tor", {
        importV4,
        exportV4: [
          {
            action: "Accept",
            cidr: CLUSTER_IPS,
            matchOperator: "Equal",
            operations: [
              { addCommunity: { value: "64512:77" } },
              { addCommunity: { value: "64512:1:2" } },
              { prependASPath: { prefix: [64600, 64601] } },
            ],
          },
          {
            action: "Accept",
            peerType: "iBGP",
            cidr: EXTERNAL_IPS,
            matchOperator: "Equal",
            operations: [{ setPriority: { value: 256 } }],
          },
        ],
      });

    beforeAll(async () => {
      lab = new NodeLab("bgpfilter");
      await lab.apply("BGPConfiguration", "default", {
        nodeToNodeMeshEnabled: false,
        asNumber: 64512,
        serviceClusterIPs: [{ cidr: CLUSTER_IPS }],
        serviceExternalIPs: [{ cidr: EXTERNAL_IPS }],
      });
      await filter([{ action: "Reject", communities: { values: ["65010:666"] } }]);
      await lab.apply("BGPPeer", "tor", {
        peerIP: BIRD_IP,
        asNumber: BIRD_AS,
        filters: ["tor"],
        keepaliveTime: "3s",
      });
      await lab.apply("BGPPeer", "ibgp", {
        peerIP: BIRD_IBGP_IP,
        asNumber: 64512,
        filters: ["tor"],
        keepaliveTime: "3s",
        // Sourced from the node's address on that link (its IP is on the other one).
        sourceAddress: "None",
      });
      const ns = lab.node("bfn", "bf-node", NODE_IP);
      bird = lab.birdOnLink(ns, "eth0", NODE_IP, "bfb", BIRD_IP, "bird", birdConf);
      const ibgpConf = ibgpBirdConf(BIRD_IBGP_IP, NODE_IBGP_IP);
      ibgp = lab.birdOnLink(ns, "eth1", NODE_IBGP_IP, "bfi", BIRD_IBGP_IP, "ibgp", ibgpConf);
      await lab.start();
    });

    afterAll(async () => {
      await lab?.close();
    });

    it("import: the route carrying (65010,666) is rejected by the communities rule; the other arrives", async () => {
      await waitFor(
        `${PLAIN} via BIRD (protocol 201)`,
        () =>
          peerStatus<Peer>(socket()).some(
            (p) => p.address === BIRD_IP && p.state === "Established",
          ) && learned().includes(PLAIN),
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${learned()}\n${why()}`);
      });
      // BIRD sent both in one go; a short look more for the tagged one.
      await new Promise((r) => setTimeout(r, 1000));
      expect(learned()).toEqual([PLAIN]);
      // BIRD did send it, with the community (the rejection is the node's).
      expect(bird.cmd("show", "route", "export", "node", "for", TAGGED, "all")).toContain(
        "(65010,666)",
      );
    });

    it("export: addCommunity (standard and large) and prependASPath seen in BIRD's `show route all`", async () => {
      const shown = await waitFor(
        `${CLUSTER_IPS} from the node in BIRD`,
        () => {
          const r = bird.route(CLUSTER_IPS);
          return r.includes("BGP.as_path") ? r : undefined;
        },
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${bird.route(CLUSTER_IPS)}\n${why()}`);
      });
      console.log(`BIRD: show route for ${CLUSTER_IPS} all\n${shown}`);
      expect(shown).toMatch(/BGP\.as_path: 64512 64600 64601\s*\n/);
      expect(shown).toMatch(/BGP\.community: \(64512,77\)\s*\n/);
      expect(shown).toMatch(/BGP\.large_community: \(64512, 1, 2\)\s*\n/);
      // The other origination matched no rule: unchanged.
      const other = await waitFor(
        `${EXTERNAL_IPS} from the node in BIRD`,
        () => {
          const r = bird.route(EXTERNAL_IPS);
          return r.includes("BGP.as_path") ? r : undefined;
        },
        60_000,
        200,
      );
      expect(other).toMatch(/BGP\.as_path: 64512\s*\n/);
      expect(other).not.toContain("BGP.community");
      expect(other).not.toContain("BGP.large_community");
    });

    it("a changed filter (accept AS paths beginning 65010 65099, reject the rest) applies live: the prefixes swap", async () => {
      await filter([{ action: "Accept", asPathPrefix: [BIRD_AS, 65099] }, { action: "Reject" }]);
      await waitFor(
        `${TAGGED} in (AS path 65010 65099) and ${PLAIN} out (AS path 65010)`,
        () => {
          const l = learned();
          return l.includes(TAGGED) && !l.includes(PLAIN);
        },
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${learned()}\n${why()}`);
      });
      expect(learned()).toEqual([TAGGED]);
    });

    it("peerType and setPriority: to the iBGP session only, the serviceExternalIPs range goes with LOCAL_PREF 2^31-1 - 256 (BIRD's `bgp_local_pref = 2147483647 - krt_metric`)", async () => {
      const shown = await waitFor(
        `${EXTERNAL_IPS} from the node in BIRD's iBGP session`,
        () => {
          const r = ibgp.cmd("show", "route", "protocol", "inode", "for", EXTERNAL_IPS, "all");
          return r.includes("BGP.local_pref") ? r : undefined;
        },
        60_000,
        200,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}\n${ibgp.cmd("show", "protocols", "all", "inode")}\n${ibgp.log()}\n${why()}`,
        );
      });
      console.log(`BIRD: show route protocol inode for ${EXTERNAL_IPS} all\n${shown}`);
      expect(shown).toMatch(/BGP\.local_pref: 2147483391\s*\n/);
      // The cluster range over iBGP: the export operations without the node's AS in front.
      const cluster = ibgp.cmd("show", "route", "protocol", "inode", "for", CLUSTER_IPS, "all");
      expect(cluster).toMatch(/BGP\.as_path: 64600 64601\s*\n/);
      // No priority of its own: the normal one, 1024, as Calico's nodes send it (2^31-1 - 1024).
      expect(cluster).toMatch(/BGP\.local_pref: 2147482623\s*\n/);
      // Over eBGP the iBGP rule is not there: the range arrives unchanged.
      expect(bird.cmd("show", "route", "protocol", "node", "for", EXTERNAL_IPS, "all")).toMatch(
        /BGP\.as_path: 64512\s*\n/,
      );
    });
  },
);
