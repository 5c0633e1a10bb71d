// IP-in-IP on the real kernel: two nodes in two L3 subnets behind a router with no BGP, the real
// `ocelot node run --networking-backend none` on each, an IPv4 pool with ipipMode Always. Every
// node gets its IP-in-IP tunnel address from IPAM on its Node (spec.bgp.ipv4IPIPTunnelAddr)
// whatever the kernel; where the kernel has the ipip module, tunl0 carries it and the remote
// block is routed `via <node address> dev tunl0 onlink` and the pods ping; where it has not
// (these machines), that test skips with the kernel's reason and the daemon says why tunl0 is
// missing (the computed requests are unit-tested in test/felix/overlay.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import type { Node } from "../../src/api/node.js";
import { kindOf } from "../../src/api/registry.js";
import { linkKindMissing, skipForMissingModule } from "../helpers/kernel.js";
import type { Netns } from "../helpers/netns.js";
import { skipWithReason, waitFor } from "../helpers/netns.js";
import { daemonTestsUnavailable } from "./harness.js";
import {
  blockOf,
  buildLab,
  destroyLab,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  routesOf,
  waitPing,
} from "./overlay_lab.js";

const skip = skipWithReason("IP-in-IP netns", daemonTestsUnavailable() ?? labToolsMissing());

describe.skipIf(skip)("overlay: IP-in-IP between two L3 subnets without BGP", () => {
  let lab: Lab;
  let a: LabNode;
  let b: LabNode;
  let missing: string | undefined;
  const logs = () => lab.nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");

  beforeAll(async () => {
    missing = linkKindMissing("ipip");
    lab = await buildLab(
      "ipp",
      [["ipip-a"], ["ipip-b"]],
      () => ["--networking-backend", "none"],
      [4],
      { ipipMode: "Always" },
      (l) => {
        lab = l;
      },
    );
    [a, b] = lab.nodes as [LabNode, LabNode];
  }, HOOK_MS);

  afterAll(async () => {
    await destroyLab(lab);
  });

  it("each Node gets its IP-in-IP tunnel address from the pool (handle ipip-tunnel-addr-<node>); without the ipip module the daemon names the reason", async () => {
    const info = kindOf("projectcalico.org/v3", "Node") as NonNullable<ReturnType<typeof kindOf>>;
    for (const n of lab.nodes) {
      const node = await waitFor(`${n.name}'s ipv4IPIPTunnelAddr`, async () => {
        const r = (await new ResourceClient(lab.store).get(info, n.name)) as unknown as Node;
        return r.spec.bgp?.ipv4IPIPTunnelAddr ? r : undefined;
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${logs()}`);
      });
      expect(node.spec.bgp?.ipv4IPIPTunnelAddr).toMatch(/^10\.232\./);
    }
    if (missing) {
      await waitFor("the daemon's warning that tunl0 cannot be created", () =>
        a.daemon?.lines.some(
          (l) =>
            l.msg === "Agent: overlay device not created (routes through it wait)" &&
            l.device === "tunl0" &&
            /Unknown device type/.test(String(l.reason)),
        ),
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${a.daemon?.log}`);
      });
      // No route through a device that does not exist.
      expect(routesOf(a.ns, "202").filter((r) => r.dev === "tunl0")).toEqual([]);
    }
  });

  it("tunl0 carries the tunnel address, the remote block goes via the node's address dev tunl0 onlink, and the pods ping", async (ctx) => {
    if (missing) skipForMissingModule(ctx, missing);
    const block = blockOf(b.pod4 as string);
    await waitFor(`${a.name}: ${block} via ${b.ip4} dev tunl0 onlink`, () =>
      routesOf(a.ns, "202").some(
        (r) =>
          r.dst === block &&
          r.gateway === b.ip4 &&
          r.dev === "tunl0" &&
          r.flags?.includes("onlink"),
      ),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    const tunl = a.ns.ipJson<{ mtu: number; addr_info: { local: string }[] }[]>(
      "addr",
      "show",
      "tunl0",
    )[0];
    expect(tunl?.mtu).toBe(1480);
    expect(tunl?.addr_info.map((x) => x.local)).toHaveLength(1);
    await waitPing(a.pod as Netns, b.pod4 as string, "pod a -> pod b over tunl0", logs);
    await waitPing(b.pod as Netns, a.pod4 as string, "pod b -> pod a over tunl0", logs);
  });
});
