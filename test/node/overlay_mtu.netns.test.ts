// FelixConfiguration's MTU fields on live nodes: two nodes in one subnet, each running the real
// `ocelot node run --networking-backend vxlan` with an IPv4 pool in vxlanMode Always and one pod
// from the real CNI plugin. Without FelixConfiguration the VXLAN device and the MTU file the CNI
// plugin reads are the fabric's 1500 minus 50; `vxlanMTU` in `default` moves both on both nodes,
// `node.<name>` on that node only (Calico's precedence), without a restart; a pod created after it
// gets the new MTU and a full-size DF ping from it crosses the overlay; `mtuIfacePattern` takes
// the host MTU from the running links it matches (a veth `ethx` at 1300: 1250), and from the
// fabric again when that link goes down. Read back with `ip -j link`.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource } from "../../src/api/client.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { cni, daemonTestsUnavailable, podEnv } from "./harness.js";
import {
  buildLab,
  destroyLab,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  ping,
  waitPing,
} from "./overlay_lab.js";

const skip = skipWithReason(
  "overlay MTU from FelixConfiguration (VXLAN, 2 nodes)",
  daemonTestsUnavailable() ?? labToolsMissing(),
);

describe.skipIf(skip)("overlay: FelixConfiguration's MTUs on live nodes", () => {
  let lab: Lab;
  let a: LabNode;
  let b: LabNode;
  let newPod: Netns | undefined;
  const logs = () => lab.nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");
  const vxlanMtu = (n: LabNode) =>
    n.ns.ipJson<{ mtu: number }[]>("link", "show", "vxlan.ocelot")[0]?.mtu;
  const fileMtu = (n: LabNode) =>
    Number(readFileSync(join(lab.dir, `${n.name}.mtu`), "utf8").trim());
  const felix = (name: string, spec: Record<string, unknown>) =>
    applyResource(lab.store, {
      apiVersion: "projectcalico.org/v3",
      kind: "FelixConfiguration",
      metadata: { name },
      spec,
    });
  /** Waits (bounded) until node n's VXLAN device and MTU file both have mtu. */
  const converged = async (n: LabNode, mtu: number, why: string) => {
    const t0 = Date.now();
    await waitFor(`${n.name}: VXLAN device and MTU file at ${mtu} (${why})`, () => {
      return vxlanMtu(n) === mtu && fileMtu(n) === mtu;
    }).catch((e) => {
      throw new Error(
        `${(e as Error).message}; device ${vxlanMtu(n)}, file ${fileMtu(n)}\n${logs()}`,
      );
    });
    console.log(`${n.name}: MTU ${mtu} (${why}) applied in ${Date.now() - t0} ms`);
  };

  beforeAll(async () => {
    lab = await buildLab(
      "mtu",
      [["mtu-a", "mtu-b"]],
      () => ["--networking-backend", "vxlan", "--resync-interval", "60s"],
      [4],
      { vxlanMode: "Always" },
      (l) => {
        lab = l;
      },
    );
    [a, b] = lab.nodes as [LabNode, LabNode];
  }, HOOK_MS);

  afterAll(async () => {
    newPod?.destroy();
    await destroyLab(lab);
  });

  it("without FelixConfiguration: the fabric's 1500 minus VXLAN's 50 on the device, in the MTU file and on the pods", async () => {
    for (const n of [a, b]) await converged(n, 1450, "auto-detected");
    const eth0 = (a.pod as Netns).ipJson<{ mtu: number }[]>("link", "show", "eth0")[0];
    expect(eth0?.mtu).toBe(1450);
    await waitPing(a.pod as Netns, b.pod4 as string, "pod a -> pod b", logs);
  });

  it("vxlanMTU in default, then in node.<name>: the devices and MTU files follow on the next pass (no restart)", async () => {
    const pids = [a, b].map((n) => n.daemon?.proc.pid);
    await felix("default", { vxlanMTU: 1400 });
    for (const n of [a, b]) await converged(n, 1400, "default vxlanMTU 1400");
    await felix(`node.${a.name}`, { vxlanMTU: 1380 });
    await converged(a, 1380, `node.${a.name} vxlanMTU 1380`);
    // The other node keeps default's value: node.<name> is that node's only.
    expect(vxlanMtu(b)).toBe(1400);
    expect(fileMtu(b)).toBe(1400);
    expect([a, b].map((n) => n.daemon?.proc.pid)).toEqual(pids);
    expect(a.daemon?.has("Pod MTU written")).toBe(true);
  });

  it("a pod created after the change gets the new MTU, and a full-size DF packet from it crosses the overlay", async () => {
    newPod = Netns.create("mtup");
    const dir = lab.dir;
    const r = await cni(a.ns, "ADD", podEnv(newPod, `${a.name}-pod2`), {
      cniVersion: "1.0.0",
      name: "k8s-pod-network",
      type: "ocelot-cni",
      datastore: lab.url,
      nodename: a.name,
      mtu_file: join(dir, `${a.name}.mtu`),
      ipam: { type: "ocelot-ipam", ipv4_pools: ["ov4"] },
    });
    if (r.code !== 0) throw new Error(`CNI ADD: ${r.stdout}${r.stderr}`);
    const eth0 = newPod.ipJson<{ mtu: number }[]>("link", "show", "eth0")[0];
    expect(eth0?.mtu).toBe(1380);
    const to = b.pod4 as string;
    await waitPing(newPod, to, "new pod -> pod b", logs);
    expect(ping(newPod, to, ["-M", "do", "-s", String(1380 - 28)]).ok).toBe(true);
    const big = ping(newPod, to, ["-M", "do", "-s", String(1380 - 27)]);
    expect(big.ok).toBe(false);
    expect(big.out).toMatch(/message too long/i);
  });

  it("mtuIfacePattern: the smallest MTU of the running links it matches, minus 50; the fabric's again when that link is down", async () => {
    // A veth pair (these kernels have no dummy module); its peer's name does not match.
    a.ns.ip("link", "add", "ethx", "mtu", "1300", "type", "veth", "peer", "name", "px");
    a.ns.ip("link", "set", "px", "up");
    a.ns.ip("link", "set", "ethx", "up");
    await felix(`node.${a.name}`, {});
    await felix("default", { mtuIfacePattern: "^eth" });
    await converged(a, 1250, "mtuIfacePattern ^eth, ethx at 1300");
    // Node b has no ethx: its eth0's 1500.
    await converged(b, 1450, "mtuIfacePattern ^eth, eth0 at 1500");
    // A link that goes down leaves the detection at the next pass (a resync or any change).
    a.ns.ip("link", "set", "ethx", "down");
    await felix("default", { mtuIfacePattern: "^eth", logSeverityScreen: "Info" });
    await converged(a, 1450, "ethx down");
  });
});
