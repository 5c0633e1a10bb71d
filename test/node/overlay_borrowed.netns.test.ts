// Borrowed addresses: a pool of one block (10.233.0.0/26), a pod on node a claims it, then a pod
// on node b gets an address from that same block (real IPAM borrowing: no free block is left).
// Three nodes (a, b in one subnet, c behind the router in another), the real `ocelot node run`
// with the BGP speaker on. With vxlanMode Always the other nodes route the borrowed /32 through
// b's tunnel (more specific than the block, which goes to a; on a, more specific than its
// blackhole), read back from the kernel, and pods ping it from both a and c. With vxlanMode
// Never, b's speaker announces the /32 and a learns it over BGP (protocol 201) and pings it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IpamKeys } from "../../src/ipam/records.js";
import { parseCidr } from "../../src/lib/ip.js";
import { tunnelMac } from "../../src/node/tunnel_addrs.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { cni, daemonTestsUnavailable, podEnv } from "./harness.js";
import {
  buildLab,
  destroyLab,
  fdbOf,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  neighOf,
  ping,
  routesOf,
  waitPing,
} from "./overlay_lab.js";

const skip = skipWithReason(
  "overlay borrowed addresses netns",
  daemonTestsUnavailable() ?? labToolsMissing(),
);
const TINY = "10.233.0.0/26";

describe.skipIf(skip)("borrowed addresses: reached through the node that has them", () => {
  let lab: Lab | undefined;
  let a: LabNode;
  let b: LabNode;
  let c: LabNode;
  const pods: Netns[] = [];
  let onA = "";
  let onB = "";
  const log = () => (lab?.nodes ?? []).map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");

  const tunnelOf = async (n: LabNode) => {
    const raw = await lab?.store.get(`/ocelot/resources/v3/nodes/${n.name}`);
    return (JSON.parse(raw?.value ?? "{}") as { spec?: { ipv4VXLANTunnelAddr?: string } }).spec
      ?.ipv4VXLANTunnelAddr;
  };

  const addPod = async (n: LabNode, name: string): Promise<[Netns, string]> => {
    const pod = Netns.create(name);
    pods.push(pod);
    const r = await cni(n.ns, "ADD", podEnv(pod, name), {
      cniVersion: "1.0.0",
      name: "k8s-pod-network",
      type: "ocelot-cni",
      datastore: lab?.url,
      nodename: n.name,
      mtu_file: `${lab?.dir}/${n.name}.mtu`,
      ipam: { type: "ocelot-ipam", ipv4_pools: ["tiny"] },
    });
    if (r.code !== 0) throw new Error(`CNI ADD ${name} on ${n.name}: ${r.stdout}${r.stderr}`);
    const ip = (JSON.parse(r.stdout).ips as { address: string }[])[0]?.address.split("/")[0];
    return [pod, ip as string];
  };

  beforeAll(async () => {
    lab = await buildLab(
      "obw",
      [["obw-a", "obw-b"], ["obw-c"]],
      () => ["--resync-interval", "5s"],
      [4],
      { vxlanMode: "Always" },
      (l) => {
        lab = l;
      },
    );
    [a, b, c] = lab.nodes as [LabNode, LabNode, LabNode];
    await putPool(lab.store, "tiny", TINY, {
      blockSize: 26,
      vxlanMode: "Always",
      allowedUses: ["Workload"],
    });
    [, onA] = await addPod(a, "obw-pa");
    [, onB] = await addPod(b, "obw-pb");
  }, HOOK_MS);

  afterAll(async () => {
    for (const p of pods) p.destroy();
    await destroyLab(lab);
  }, HOOK_MS);

  it("IPAM lends b an address of a's block (the pool has one block)", async () => {
    const inTiny = (ip: string) => ip.startsWith("10.233.0.") && Number(ip.split(".")[3]) < 64;
    expect(inTiny(onA), onA).toBe(true);
    expect(inTiny(onB), onB).toBe(true);
    const keys = new IpamKeys();
    const affinities = await lab?.store.list(keys.hostPrefix());
    const owners = (affinities?.items ?? [])
      .map((kv) => kv.key)
      .filter((k) => k.endsWith(keys.affinity("x", parseCidr(TINY)).split("/").pop() as string));
    expect(owners.length, JSON.stringify(owners)).toBe(1);
    expect(owners[0]).toContain("/obw-a/");
  });

  it("vxlanMode Always: on a and c, the /32 via b's tunnel address dev vxlan.ocelot onlink, the block via a's (on c); pods on a and c ping it", async () => {
    const tunB = await tunnelOf(b);
    const tunA = await tunnelOf(a);
    expect(tunB).toBeTruthy();
    for (const n of [a, c])
      await waitFor(`${n.name}: ${onB}/32 via ${tunB}`, () =>
        routesOf(n.ns, "202").some(
          (r) =>
            r.dst === `${onB}` &&
            r.gateway === tunB &&
            r.dev === "vxlan.ocelot" &&
            r.flags?.includes("onlink"),
        ),
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${JSON.stringify(routesOf(n.ns, "202"))}`);
      });
    const onC = routesOf(c.ns, "202");
    expect(onC.find((r) => r.dst === TINY)?.gateway).toBe(tunA);
    // On b itself: no /32 through the tunnel (its pod's own route is there).
    expect(routesOf(b.ns, "202").some((r) => r.dst === onB && r.dev === "vxlan.ocelot")).toBe(
      false,
    );
    // Real traffic: from the pod on a (the same block!) and from c's pod, across the router.
    await waitPing(pods[0] as Netns, onB, `a's pod -> ${onB}`, log);
    await waitPing(c.pod as Netns, onB, `c's pod -> ${onB}`, log);
    expect(ping(pods[1] as Netns, onA).ok).toBe(true);
  });

  it("a new node's block takes the fast path: route, neighbour and FDB entry on a, b and c without the full pass adding them", async () => {
    const store = lab?.store as Lab["store"];
    const name = "obw-x";
    const mac = tunnelMac(name, 4);
    await store.update(
      `/ocelot/resources/v3/nodes/${name}`,
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name },
        spec: {
          bgp: { ipv4Address: "10.31.1.99/24" },
          ipv4VXLANTunnelAddr: "10.232.250.1",
          vxlanTunnelMACAddr: mac,
        },
      }),
    );
    // A node registers before its first block: let every daemon's pass for the new Node finish
    // (a pass logged since the write, then a quiet log for 500 ms), as bench/overlay.ts does,
    // so that pass cannot be the one that adds the block.
    const PASS = /Agent: (data plane converged|kernel drift repaired)/g;
    const passes = () =>
      (lab?.nodes ?? []).map((n) => (n.daemon?.log ?? "").match(PASS)?.length ?? 0);
    const before = passes();
    let prev = "";
    let quietSince = Date.now();
    await waitFor(
      "every daemon's pass for the new Node",
      () => {
        const key = (lab?.nodes ?? []).map((n) => n.daemon?.log.length ?? 0).join();
        if (key !== prev) {
          prev = key;
          quietSince = Date.now();
        }
        return (
          passes().every((c, i) => c > (before[i] as number)) && Date.now() - quietSince >= 500
        );
      },
      HANG_MS,
      50,
    );
    const block = "10.232.250.0/26";
    const logsBefore = (lab?.nodes ?? []).map((n) => n.daemon?.log.length ?? 0);
    await putAffinity(store, name, block);
    for (const n of [a, b, c])
      await waitFor(
        `${n.name}: ${block}, its neighbour and FDB entry`,
        () =>
          routesOf(n.ns, "202").some((r) => r.dst === block && r.gateway === "10.232.250.1") &&
          neighOf(n.ns, "vxlan.ocelot").some((x) => x.dst === "10.232.250.1" && x.lladdr === mac) &&
          fdbOf(n.ns, "vxlan.ocelot").some((f) => f.mac === mac && f.dst === "10.31.1.99"),
      );
    // Not the full pass's doing: none logged adding them.
    for (const [i, n] of (lab?.nodes ?? []).entries()) {
      const after = (n.daemon?.log ?? "").slice(logsBefore[i]);
      expect(after).not.toContain(`route ${block}`);
      expect(after).not.toContain("neighbour 10.232.250.1");
    }
    await store.delete(new IpamKeys().affinity(name, parseCidr(block)));
    for (const n of [a, b, c])
      await waitFor(
        `${n.name}: ${block} and its entries gone`,
        () =>
          routesOf(n.ns, "202").every((r) => r.dst !== block) &&
          neighOf(n.ns, "vxlan.ocelot").every((x) => x.dst !== "10.232.250.1") &&
          fdbOf(n.ns, "vxlan.ocelot").every((f) => f.mac !== mac),
      );
  });

  it("vxlanMode Never (BGP): b announces the /32, a learns it (protocol 201, via b) and its pod pings it", async () => {
    await putPool(lab?.store as Lab["store"], "tiny", TINY, {
      blockSize: 26,
      vxlanMode: "Never",
      allowedUses: ["Workload"],
    });
    await waitFor(
      `a: ${onB}/32 from BGP via ${b.ip4}`,
      () => routesOf(a.ns, "201").some((r) => r.dst === onB && r.gateway === b.ip4),
      HANG_MS,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${JSON.stringify(routesOf(a.ns, "201"))}`);
    });
    // The overlay's /32 is gone (BGP's now).
    await waitFor(`a: no overlay route for ${onB}`, () =>
      routesOf(a.ns, "202").every((r) => r.dst !== onB),
    );
    await waitPing(pods[0] as Netns, onB, `a's pod -> ${onB} natively`, log);
  });
});
