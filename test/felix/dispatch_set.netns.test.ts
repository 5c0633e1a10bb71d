// The dispatch by set (PolicyInput.dispatchBySet) applied by the agent's incremental applier in
// a dual-stack node namespace, with the verdicts of the per-interface dispatch: a policy on
// app=b allows only ICMP/ICMPv6 from app=a, one on app=a lets it send only ICMP/ICMPv6 to app=b.
// A pings B over both families, C (app=b as well) does not reach B, B reaches A (its egress
// open; A's answers established), the node reaches B (not policed), A does not reach the node
// (its egress, from INPUT); a pod whose interface no endpoint names gets nothing (the
// unknown-interface drop). B and a pod joining its
// group share one chain, dispatched by one rule matching a hash:net,iface set: the new pod is a
// set member (written over netlink), no rule is written for it. Switching to the per-interface
// dispatch and back keeps the verdicts and leaves no chain or set of the other design.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IncrementalApplier } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { fromNetworkPolicy, type PolicyInput } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { addPod, ping, policyEndpointsOf, workloadsOf } from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("dispatch by set (netns)", reason);

const PODS = {
  a: { iface: "ocldsaaaaaaaaa", v4: "10.244.6.1", v6: "fd00:244::6:1" },
  b: { iface: "ocldsbbbbbbbbb", v4: "10.244.6.2", v6: "fd00:244::6:2" },
  c: { iface: "ocldsccccccccc", v4: "10.244.6.3", v6: "fd00:244::6:3" },
};

describe.skipIf(skip)("dispatch by set, applied in a dual-stack namespace", () => {
  let node: Netns;
  const pods: Record<"a" | "b" | "c", Netns> = {} as never;
  let fib: KernelFib;
  const applier = new IncrementalApplier();

  const policies = [
    fromNetworkPolicy({
      metadata: { name: "b-icmp-from-a", namespace: "default" },
      spec: {
        selector: "app == 'b'",
        ingress: [
          { action: "Allow", protocol: "ICMP", source: { selector: "app == 'a'" } },
          { action: "Allow", protocol: "ICMPv6", source: { selector: "app == 'a'" } },
        ],
      },
    }),
    fromNetworkPolicy({
      metadata: { name: "a-icmp-to-b", namespace: "default" },
      spec: {
        selector: "app == 'a'",
        types: ["Egress"],
        egress: [
          { action: "Allow", protocol: "ICMP", destination: { selector: "app == 'b'" } },
          { action: "Allow", protocol: "ICMPv6", destination: { selector: "app == 'b'" } },
        ],
      },
    }),
  ];
  /** The endpoints: a and b, and c (labelled app=b) when cKnown. */
  const endpoints = (cKnown: boolean): PolicyInput["endpoints"] =>
    policyEndpointsOf(PODS)
      .filter((e) => cKnown || e.id !== "default/c")
      .map((e) => (e.id === "default/c" ? { ...e, labels: { app: "b" } } : e));
  const input = (cKnown: boolean, bySet: boolean): DataplaneInput => ({
    workloads: workloadsOf(PODS),
    pools: [
      { cidr: "10.244.0.0/16", natOutgoing: false },
      { cidr: "fd00:244::/64", natOutgoing: false },
    ],
    policy: { endpoints: endpoints(cKnown), policies, ...(bySet ? { dispatchBySet: true } : {}) },
  });
  const apply = (cKnown: boolean, bySet: boolean) =>
    applier.apply(renderDataplane(input(cKnown, bySet)), {
      netns: node.name,
      fib,
      direct: true,
      iptables: "nft",
    });

  beforeAll(async () => {
    node = Netns.create("fds");
    addUplink(node, "192.0.2.32/24");
    for (const app of ["a", "b", "c"] as const)
      pods[app] = addPod(node, `fds${app}`, PODS[app].iface, PODS[app].v4, PODS[app].v6);
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  });

  afterAll(async () => {
    applier.close();
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  /** The verdicts of the policy with c's endpoint known (or not). */
  const expectVerdicts = (cKnown: boolean) => {
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(ping(pods.a, PODS.b.v6, true)).toBe(true);
    expect(ping(pods.b, PODS.a.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v4, true)).toBe(true);
    // A's egress (from INPUT): the node is not app=b.
    expect(ping(pods.a, "192.0.2.32", false)).toBe(false);
    // c is app=b when known: not from app=a, so refused by b's policy; unknown: dropped.
    expect(ping(pods.c, PODS.b.v4, false)).toBe(false);
    expect(ping(pods.c, PODS.b.v6, false)).toBe(false);
    // To c: from app=a allowed when known (it is app=b), nothing when unknown.
    expect(ping(pods.a, PODS.c.v4, cKnown)).toBe(cKnown);
  };

  it("polices as the per-interface dispatch, by one set rule a group", async () => {
    await apply(false, true);
    expectVerdicts(false);
    const v4 = node.exec("iptables-nft-save", "-t", "filter");
    const v6 = node.exec("ip6tables-nft-save", "-t", "filter");
    expect(v4).toMatch(/-A ocl-to-wl-dispatch -m set --match-set ocl-e-\S+ dst,dst -g ocl-tg-\S+/);
    expect(v6).toMatch(/-A ocl-to-wl-dispatch -m set --match-set ocl6-e-\S+ dst,dst -g ocl-tg-\S+/);
    expect(v4).toMatch(/-A ocl-from-wl-dispatch -m set --match-set ocl-e-\S+ src,src -j RETURN/);
    expect(v4).toMatch(
      /-A ocl-from-wl-dispatch -m set --match-set ocl-e-\S+ src,src -g ocl-fg-\S+/,
    );
    expect(v4).toContain("-A ocl-to-wl-dispatch -j DROP");
    expect(v4).not.toMatch(/ocl-[tf]w-/);
    const sets = node.exec("ipset", "save");
    expect(sets).toMatch(/create ocl-e-\S+ hash:net,iface family inet /);
    expect(sets).toContain(`0.0.0.0/0,${PODS.b.iface}`);
    expect(sets).toContain(`::/0,${PODS.b.iface}`);
    expect(sets).not.toContain(PODS.c.iface);
  });

  it("a second pass changes nothing; a pod joining a group is a set member, no rule", async () => {
    expect((await apply(false, true)).changes).toEqual([]);
    const tgs = (node.exec("iptables-nft-save", "-t", "filter").match(/^:ocl-tg-\S+/gm) ?? [])
      .length;
    const r = await apply(true, true);
    expect(r.iptables.filter((t) => t.payload !== null)).toEqual([]);
    expect(node.exec("iptables-nft-save", "-t", "filter").match(/^:ocl-tg-\S+/gm)?.length).toBe(
      tgs,
    );
    expect(node.exec("ipset", "save")).toContain(`0.0.0.0/0,${PODS.c.iface}`);
    expectVerdicts(true);
  });

  it("switching to the per-interface dispatch and back keeps the verdicts, no leftovers", async () => {
    await apply(true, false);
    expectVerdicts(true);
    let v4 = node.exec("iptables-nft-save", "-t", "filter");
    expect(v4).toContain(`-A ocl-to-wl-dispatch -o ${PODS.b.iface} -g ocl-tw-${PODS.b.iface}`);
    expect(v4).not.toMatch(/ocl-[tf]g-/);
    expect(node.exec("ipset", "save")).not.toMatch(/ocl6?-e-/);
    await apply(true, true);
    expectVerdicts(true);
    v4 = node.exec("iptables-nft-save", "-t", "filter");
    expect(v4).not.toMatch(/ocl-[tf]w-/);
    expect(v4).toMatch(/ocl-tg-/);
  });
});
