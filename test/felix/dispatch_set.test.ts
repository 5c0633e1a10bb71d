// The dispatch by set rendered (policy.ts, PolicyInput.dispatchBySet), no kernel: endpoints
// whose chains are the same share one group chain, dispatched by one rule matching a
// hash:net,iface set of every address with each interface (`0.0.0.0/0,<iface>`, `::/0,<iface>`
// in IPv6), matched on the incoming interface from workloads and the outgoing one to them;
// known endpoints no policy selects by a RETURN set; the unknown-interface drop last; the rules a
// group's chain holds are those of each member's per-interface chain. The full-pass encoder of
// such a set's members (ipset_restore.ts) and the incremental one (ipset_netlink.ts).
import { describe, expect, it } from "vitest";
import { IPSET_ATTR_IFACE, writeIpsetOp } from "../../src/felix/ipset_netlink.js";
import { encodeIpsetRestore } from "../../src/felix/ipset_restore.js";
import {
  endpointChainName,
  fromGlobalNetworkPolicy,
  type PolicyInput,
  PolicyRenderCache,
  renderPolicy,
} from "../../src/felix/policy.js";
import { MessageWriter } from "../../src/fib/rtnetlink.js";

const ep = (n: number, app: string) => ({
  id: `ns/p${n}`,
  namespace: "ns",
  labels: { app },
  addresses: [`10.0.0.${n}`, `fd00::${n}`],
  iface: `oclp${n}`,
});

const input = (bySet: boolean): PolicyInput => ({
  endpoints: [ep(1, "web"), ep(2, "web"), ep(3, "db")],
  policies: [
    fromGlobalNetworkPolicy({
      metadata: { name: "web" },
      spec: {
        selector: "app == 'web'",
        types: ["Ingress"],
        ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [80] } }],
      },
    }),
  ],
  ...(bySet ? { dispatchBySet: true } : {}),
});

const chainOf = (s: ReturnType<typeof renderPolicy>, name: string) =>
  s.chains.find((c) => c.name === name)?.rules;

describe("renderPolicy() with dispatchBySet", () => {
  it("dispatches each group by one set rule to one chain, the rules of each member's own", () => {
    const bySet = renderPolicy(input(true), 4, new PolicyRenderCache());
    const flat = renderPolicy(input(false), 4, new PolicyRenderCache());
    const to = chainOf(bySet, "ocl-to-wl-dispatch") as string[];
    expect(to).toHaveLength(3);
    expect(to[2]).toBe("-j DROP");
    const group = to.find((r) => / -g /.test(r)) as string;
    const [, set, chain] = /--match-set (\S+) dst,dst -g (ocl-tg-\S+)$/.exec(group) ?? [];
    expect(set).toMatch(/^ocl-e-/);
    // The group's chain: p1's and p2's per-interface chain, rule for rule.
    expect(chainOf(bySet, chain as string)).toEqual(
      chainOf(flat, endpointChainName("oclp1", "Ingress")),
    );
    expect(chainOf(flat, endpointChainName("oclp2", "Ingress"))).toEqual(
      chainOf(flat, endpointChainName("oclp1", "Ingress")),
    );
    const sets = new Map(bySet.ipsets.map((s) => [s.name, s]));
    expect(sets.get(set as string)).toEqual({
      name: set,
      type: "hash:net,iface",
      family: "inet",
      members: ["0.0.0.0/0,oclp1", "0.0.0.0/0,oclp2"],
    });
    // p3 (no policy) and everyone's egress: known, RETURN.
    const ret = to.find((r) => / -j RETURN$/.test(r)) as string;
    const retSet = /--match-set (\S+) dst,dst/.exec(ret)?.[1] as string;
    expect(sets.get(retSet)?.members).toEqual(["0.0.0.0/0,oclp3"]);
    const from = chainOf(bySet, "ocl-from-wl-dispatch") as string[];
    expect(from).toHaveLength(2);
    expect(from[0]).toMatch(/^-m set --match-set ocl-e-\S+ src,src -j RETURN$/);
    expect(bySet.chains.some((c) => /^ocl-[tf]w-/.test(c.name))).toBe(false);
  });

  it("names IPv6 sets ocl6-e- with ::/0 members", () => {
    const s = renderPolicy(input(true), 6, new PolicyRenderCache());
    const e = s.ipsets.filter((x) => x.name.startsWith("ocl6-e-"));
    // To workloads: p1 and p2's group, p3 (RETURN); from them: all three (RETURN).
    expect(e.map((x) => x.family)).toEqual(["inet6", "inet6", "inet6"]);
    expect(e.map((x) => x.members.join(" ")).sort()).toEqual([
      "::/0,oclp1 ::/0,oclp2",
      "::/0,oclp1 ::/0,oclp2 ::/0,oclp3",
      "::/0,oclp3",
    ]);
  });

  it("re-renders every endpoint when the design changes (one cache across renders)", () => {
    const cache = new PolicyRenderCache();
    renderPolicy(input(false), 4, cache);
    const bySet = renderPolicy(input(true), 4, cache);
    expect(bySet.chains.some((c) => /^ocl-[tf]w-/.test(c.name))).toBe(false);
    const flat = renderPolicy(input(false), 4, cache);
    expect(flat.chains.some((c) => /^ocl-[tf]g-/.test(c.name))).toBe(false);
    expect(flat.ipsets.some((s) => s.type === "hash:net,iface")).toBe(false);
  });
});

describe("hash:net,iface members over netlink", () => {
  it("the full pass's encoder writes /0 and the interface; a bad name is refused by line", () => {
    let seq = 1;
    const e = encodeIpsetRestore(
      "create s hash:net,iface family inet\nadd s 0.0.0.0/0,oclp1\nadd s 10.0.0.0/8,oclp2\n",
      (type) => (type === "hash:net,iface" ? 8 : "no"),
      () => seq++,
    );
    expect(e).toMatchObject({ members: 2 });
    const buf = (e as { buf: Buffer }).buf;
    expect(buf.includes(Buffer.from("oclp1\0"))).toBe(true);
    expect(() =>
      encodeIpsetRestore(
        "create s hash:net,iface family inet\nadd s 0.0.0.0/0,a-name-far-too-long\n",
        () => 8,
        () => seq++,
      ),
    ).toThrow(/line 2 .*interface name/);
  });

  it("the incremental writer adds the interface attribute and allows /0 only with one", () => {
    const w = new MessageWriter(1024);
    writeIpsetOp(w, 1, { op: "add", set: "s", member: "::/0,oclp1" });
    const at = w.buf.subarray(0, w.len).indexOf(Buffer.from("oclp1\0"));
    expect(at).toBeGreaterThan(0);
    expect(w.buf.readUInt16LE(at - 2) & 0x3fff).toBe(IPSET_ATTR_IFACE);
    expect(() =>
      writeIpsetOp(new MessageWriter(64), 1, { op: "add", set: "s", member: "0.0.0.0/0" }),
    ).toThrow(/prefix length is not 1\.\.32/);
  });
});
