// Pure tests of the agent's workload renderer: interface names, per-pod routes, sysctls.
import { describe, expect, it } from "vitest";
import { nodeSysctls, renderWorkloads } from "../../src/felix/workload.js";
import { RTPROT_OCELOT_AGENT } from "../../src/fib/types.js";
import { WORKLOAD_HOST_MAC, workloadIfaceName } from "../../src/lib/pod_wiring.js";

describe("workloadIfaceName()", () => {
  it("is ocl + 11 hex chars of SHA-1 of the id, 14 chars, stable", () => {
    // sha1("node1/default/pod1") = 62b8bc418b40...: computed with `printf ... | sha1sum`.
    const name = workloadIfaceName("node1/default/pod1");
    expect(name).toBe("ocl62b8bc418b4");
    expect(name).toBe(workloadIfaceName("node1/default/pod1"));
    expect(name).not.toBe(workloadIfaceName("node1/default/pod2"));
  });

  it("throws on an empty id", () => {
    expect(() => workloadIfaceName("")).toThrow(/Workload id is empty/);
  });
});

describe("renderWorkloads()", () => {
  it("renders /32 and /128 device routes under protocol 202, sorted by workload id", () => {
    const s = renderWorkloads(
      [
        { id: "b", ipv4: ["10.244.0.2"], ipv6: ["fd00:0:0:0::0002/128"] },
        { id: "a", hostIface: "ocltest0", ipv4: ["10.244.0.1/32"], ipv6: [] },
      ],
      ["10.244.0.0/26"],
    );
    const b = workloadIfaceName("b");
    expect(s.routes).toEqual([
      {
        family: 4,
        dst: "10.244.0.1/32",
        protocol: RTPROT_OCELOT_AGENT,
        scope: "link",
        nexthops: [{ dev: "ocltest0" }],
      },
      { family: 4, dst: "10.244.0.2/32", protocol: 202, scope: "link", nexthops: [{ dev: b }] },
      { family: 6, dst: "fd00::2/128", protocol: 202, scope: "link", nexthops: [{ dev: b }] },
      { family: 4, dst: "10.244.0.0/26", protocol: 202, type: "blackhole", nexthops: [] },
    ]);
    expect(s.ifaces.map((i) => [i.name, i.mac, i.up])).toEqual([
      ["ocltest0", WORKLOAD_HOST_MAC, true],
      [b, "ee:ee:ee:ee:ee:ee", true],
    ]);
  });

  it("sets Felix's per-interface sysctls, IPv6 ones only for workloads with IPv6", () => {
    const s = renderWorkloads([
      { id: "a", hostIface: "ocla", ipv4: ["10.0.0.1"], ipv6: [] },
      { id: "b", hostIface: "oclb", ipv4: [], ipv6: ["fd00::1"] },
    ]);
    const a = Object.fromEntries(s.ifaces[0].sysctls.map((x) => [x.key, x.value]));
    expect(a).toEqual({
      "net.ipv4.conf.ocla.forwarding": "1",
      "net.ipv4.conf.ocla.rp_filter": "1",
      "net.ipv4.conf.ocla.route_localnet": "1",
      "net.ipv4.conf.ocla.proxy_arp": "1",
      "net.ipv4.neigh.ocla.proxy_delay": "0",
    });
    const b = Object.fromEntries(s.ifaces[1].sysctls.map((x) => [x.key, x.value]));
    expect(b["net.ipv6.conf.oclb.proxy_ndp"]).toBe("1");
    expect(b["net.ipv6.conf.oclb.forwarding"]).toBe("1");
    expect(b["net.ipv6.conf.oclb.accept_ra"]).toBe("0");
    expect(s.sysctls).toEqual([
      { key: "net.ipv4.ip_forward", value: "1" },
      { key: "net.ipv6.conf.all.forwarding", value: "1" },
    ]);
  });

  it("honours rpFilter and ipv6 options", () => {
    const s = renderWorkloads([{ id: "a", hostIface: "ocla", ipv4: ["10.0.0.1"], ipv6: [] }], [], {
      rpFilter: 0,
      ipv6: false,
    });
    expect(s.ifaces[0].sysctls).toContainEqual({ key: "net.ipv4.conf.ocla.rp_filter", value: "0" });
    expect(nodeSysctls({ ipv6: false })).toEqual([{ key: "net.ipv4.ip_forward", value: "1" }]);
  });

  it("reuses a route or interface made of the same values (frozen); a changed one is new", () => {
    const w = (id: string, ipv4: string[], spoof?: string[]) => ({
      id,
      ipv4,
      ipv6: [],
      ...(spoof ? { spoofPrefixes: spoof } : {}),
    });
    const a = renderWorkloads([w("n/a", ["10.0.0.1"]), w("n/b", ["10.0.0.2"])], ["10.0.0.0/26"]);
    const b = renderWorkloads(
      [w("n/a", ["10.0.0.1"]), w("n/b", ["10.0.0.3"], ["10.9.0.0/16"])],
      ["10.0.0.0/26"],
    );
    expect(b.routes[0]).toBe(a.routes[0]);
    expect(b.routes[2]).toBe(a.routes[2]); // the block's blackhole
    expect(b.ifaces[0]).toBe(a.ifaces[0]);
    expect(Object.isFrozen(a.routes[0]) && Object.isFrozen(a.routes[0]?.nexthops[0])).toBe(true);
    expect(Object.isFrozen(a.ifaces[0]?.sysctls[0])).toBe(true);
    // n/b's address and its rp_filter (spoofing allowed) changed: new objects, new values.
    expect(b.routes[1]).not.toBe(a.routes[1]);
    expect(b.routes[1]?.dst).toBe("10.0.0.3/32");
    expect(b.ifaces[1]).not.toBe(a.ifaces[1]);
    expect(b.ifaces[1]?.sysctls).toContainEqual({
      key: `net.ipv4.conf.${workloadIfaceName("n/b")}.rp_filter`,
      value: "0",
    });
    // The same values rendered fresh (no earlier render to reuse) are equal.
    expect(JSON.parse(JSON.stringify(b))).toEqual(
      JSON.parse(
        JSON.stringify(
          renderWorkloads(
            [w("n/b", ["10.0.0.3"], ["10.9.0.0/16"]), w("n/a", ["10.0.0.1"])],
            ["10.0.0.0/26"],
          ),
        ),
      ),
    );
  });

  it("refuses bad addresses, wrong lengths, duplicate owners and bad names, quoting the value", () => {
    const one = (w: { ipv4?: string[]; ipv6?: string[]; hostIface?: string }) => () =>
      renderWorkloads([{ id: "p", ipv4: [], ipv6: [], ...w }]);
    expect(one({ ipv4: ["10.0.0.256"] })).toThrow(
      'Invalid IPv4 address "10.0.0.256" for workload "p"',
    );
    expect(one({ ipv4: ["10.0.0.1/24"] })).toThrow('Invalid IPv4 address "10.0.0.1/24"');
    expect(one({ ipv4: ["fd00::1"] })).toThrow('Invalid IPv4 address "fd00::1"');
    expect(one({ ipv6: ["10.0.0.1"] })).toThrow('Invalid IPv6 address "10.0.0.1"');
    expect(one({ hostIface: "ocl-way-too-long-name" })).toThrow(
      'Invalid host interface name "ocl-way-too-long-name"',
    );
    expect(() =>
      renderWorkloads([
        { id: "p", ipv4: ["10.0.0.1"], ipv6: [] },
        { id: "q", ipv4: ["10.0.0.1"], ipv6: [] },
      ]),
    ).toThrow('Address "10.0.0.1/32" is claimed by workloads "p" and "q"');
    expect(() =>
      renderWorkloads([
        { id: "p", hostIface: "oclx", ipv4: [], ipv6: [] },
        { id: "q", hostIface: "oclx", ipv4: [], ipv6: [] },
      ]),
    ).toThrow('Host interface "oclx" is claimed by workloads "p" and "q"');
    expect(() => renderWorkloads([], ["10.0.0.0/33"])).toThrow();
  });
});
