// The MTUs of the pods and the tunnel devices as Calico's Felix computes them (pure), each test
// named after the Felix rule it covers (felix/dataplane/linux/int_dataplane.go findHostMTU,
// ConfigureDefaultMTUs, determinePodMTU; felix/config's source order and parsing), and the same
// through the node's state: FelixConfiguration `default` / `node.<name>` and calico-node's
// FELIX_* environment into the overlay's devices and pod MTU.
import { describe, expect, it } from "vitest";
import type { Node } from "../../src/api/node.js";
import { validateResource } from "../../src/api/registry.js";
import {
  effectiveFelixSpec,
  felixEnvironment,
  felixSettings,
} from "../../src/felix/felix_config.js";
import { computeMtus, type HostLink, hostMtuOf } from "../../src/felix/mtu.js";
import { renderOverlay } from "../../src/felix/overlay.js";
import { compileGoRegexp } from "../../src/lib/go_regexp.js";
import {
  type NodeSnapshot,
  overlayInputOf,
  storedOnlyWarnings,
} from "../../src/node/agent_state.js";
import { pool, V3 } from "../node/resources.js";

const link = (name: string, mtu: number, running = true): HostLink => ({ name, mtu, running });
const fabric = { 4: { name: "eth0", mtu: 1500 }, 6: { name: "eth0", mtu: 1500 } };
const none = { vxlan4: false, vxlan6: false, ipip: false };
/** Calico's default mtuIfacePattern. */
const CALICO_DEFAULT = compileGoRegexp("^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)");

describe("findHostMTU: the host MTU from mtuIfacePattern", () => {
  it("findHostMTU: the smallest MTU among the interfaces whose names match", () => {
    const links = [
      link("eth0", 9000),
      link("ens3", 1460),
      link("cali123", 1400),
      link("lo", 65536),
    ];
    expect(hostMtuOf(links, CALICO_DEFAULT)).toBe(1460);
    expect(hostMtuOf(links, compileGoRegexp("^eth"))).toBe(9000);
  });

  it("findHostMTU: interfaces that are not running are skipped (IFF_RUNNING)", () => {
    expect(hostMtuOf([link("eth0", 1500), link("eth1", 1200, false)], CALICO_DEFAULT)).toBe(1500);
  });

  it("findHostMTU: the match is unanchored, as Go's MatchString", () => {
    expect(hostMtuOf([link("bond0", 1400), link("eth0", 1500)], compileGoRegexp("ond"))).toBe(1400);
  });

  it("findHostMTU: no interface matches -> none (Ocelot then uses the fabric interface's)", () => {
    expect(hostMtuOf([link("cali1", 1400)], CALICO_DEFAULT)).toBeUndefined();
    const m = computeMtus({ 4: { name: "br0", mtu: 1400 } }, { ...none, vxlan4: true }, {});
    expect(m.vxlan4).toBe(1350);
  });
});

describe("ConfigureDefaultMTUs: each encapsulation's MTU", () => {
  it("ConfigureDefaultMTUs: unset (or 0) vxlanMTU, vxlanMTUV6, ipipMTU are the host MTU minus 50, 70, 20", () => {
    const m = computeMtus(fabric, none, { vxlan4: 0 });
    expect([m.vxlan4, m.vxlan6, m.ipip]).toEqual([1450, 1430, 1480]);
    const h = computeMtus(fabric, none, { hostMtu: 9000 });
    expect([h.vxlan4, h.vxlan6, h.ipip]).toEqual([8950, 8930, 8980]);
  });

  it("ConfigureDefaultMTUs: an explicit value is used as it is (not checked against the host)", () => {
    const m = computeMtus(fabric, none, { vxlan4: 1400, vxlan6: 1380, ipip: 8980 });
    expect([m.vxlan4, m.vxlan6, m.ipip]).toEqual([1400, 1380, 8980]);
  });

  it("an explicit value no link can have is left out with a warning naming the field", () => {
    const m = computeMtus(fabric, { ...none, vxlan4: true }, { vxlan4: 20 });
    expect(m.vxlan4).toBe(1450);
    expect(m.warnings.join()).toMatch(/vxlanMTU: 20 is not an MTU/);
  });

  it("--mtu (Calico's veth_mtu) is above FelixConfiguration and detection", () => {
    const m = computeMtus(fabric, { ...none, vxlan4: true }, { override: 1300, vxlan4: 1400 });
    expect(m).toMatchObject({ vxlan4: 1300, vxlan6: 1300, ipip: 1300, pod: 1300 });
  });
});

describe("determinePodMTU: the pods' MTU", () => {
  it("determinePodMTU: the smallest MTU among the encapsulations in use", () => {
    expect(computeMtus(fabric, { vxlan4: true, vxlan6: true, ipip: false }).pod).toBe(1430);
    expect(computeMtus(fabric, { ...none, ipip: true }, { vxlan4: 1000 }).pod).toBe(1480);
    expect(computeMtus(fabric, { ...none, vxlan4: true }, { vxlan4: 1400 }).pod).toBe(1400);
  });

  it("determinePodMTU: no encapsulation in use -> the host MTU", () => {
    expect(computeMtus(fabric, none, { vxlan4: 1400 }).pod).toBe(1500);
    expect(computeMtus(fabric, none, { hostMtu: 1460 }).pod).toBe(1460);
  });

  it("determinePodMTU: a configured MTU above the host MTU is used, with Felix's warning", () => {
    const m = computeMtus(fabric, { ...none, vxlan4: true }, { vxlan4: 9000 });
    expect(m.pod).toBe(9000);
    expect(m.warnings.join()).toMatch(/larger than the host interfaces' MTU 1500/);
  });
});

describe("Felix's config sources for the MTU fields", () => {
  const felix = (name: string, spec: Record<string, unknown>) => ({ metadata: { name }, spec });

  it("source order: node.<name> over default, field by field", () => {
    const spec = effectiveFelixSpec(
      [felix("default", { vxlanMTU: 1400, ipipMTU: 1420 }), felix("node.n1", { vxlanMTU: 1380 })],
      "n1",
    );
    expect(felixSettings(spec)).toMatchObject({ vxlanMtu: 1380, ipipMtu: 1420 });
  });

  it("source order: the environment (FELIX_VXLANMTU, any case) over the datastore, with a warning", () => {
    const env = felixEnvironment({ FELIX_VXLANMTU: "1350", felix_ipinipmtu: "1410", PATH: "/bin" });
    expect(env).toEqual({ vxlanMTU: "1350", ipipMTU: "1410" });
    const s = felixSettings({ vxlanMTU: 1400 }, env);
    expect(s).toMatchObject({ vxlanMtu: 1350, ipipMtu: 1410 });
    expect(s.warnings.join()).toMatch(/vxlanMTU: 1400 is overridden by the environment \(1350\)/);
  });

  it('UpdateFrom: an empty environment value is ignored; "0" is a value (auto) and still wins', () => {
    expect(felixEnvironment({ FELIX_VXLANMTU: "" })).toEqual({});
    const s = felixSettings({ vxlanMTU: 1400 }, felixEnvironment({ FELIX_VXLANMTU: "0" }));
    expect(s.vxlanMtu).toBe(0);
    expect(computeMtus(fabric, none, { vxlan4: s.vxlanMtu }).vxlan4).toBe(1450);
  });

  it("IntParam: an unparsable value is replaced by the default (auto), with a warning", () => {
    const s = felixSettings({}, felixEnvironment({ FELIX_VXLANMTUV6: "big" }));
    expect(s.vxlanMtuV6).toBeUndefined();
    expect(s.warnings.join()).toMatch(/vxlanMTUV6: "big" is not an integer/);
  });

  it("RegexpPatternParam: mtuIfacePattern compiled as Go's regexp; an invalid one is named", () => {
    expect(felixSettings({ mtuIfacePattern: "(?i)^ETH" }).mtuIfacePattern?.test("eth0")).toBe(true);
    const bad = felixSettings({}, felixEnvironment({ FELIX_MTUIFACEPATTERN: "*" }));
    expect(bad.mtuIfacePattern).toBeUndefined();
    expect(bad.warnings.join()).toMatch(/mtuIfacePattern: "\*" is not a regular expression/);
  });
});

describe("Calico's validator: mtuIfacePattern must compile (validator `regexp`)", () => {
  const doc = (mtuIfacePattern: string) => ({
    apiVersion: V3,
    kind: "FelixConfiguration",
    metadata: { name: "default" },
    spec: { mtuIfacePattern },
  });
  it("should reject an invalid MTUIfacePattern value '*'", () => {
    expect(() => validateResource(doc("*"))).toThrow(/mtuIfacePattern.*not a regular expression/s);
  });
  it("should accept a valid MTUIfacePattern value 'eth.*'", () => {
    expect(validateResource(doc("eth.*")).resource.spec).toEqual({ mtuIfacePattern: "eth.*" });
  });
  it("RE2 has no lookaround or backreferences: refused as Go refuses them", () => {
    expect(() => compileGoRegexp("^(?!cali)")).toThrow(/lookaround/);
    expect(() => compileGoRegexp("(a)\\1")).toThrow(/backreferences/);
  });
});

describe("the node's overlay from FelixConfiguration (node state)", () => {
  const node = (name: string, host: number) =>
    ({
      apiVersion: V3,
      kind: "Node",
      metadata: { name },
      spec: {
        bgp: { ipv4Address: `10.0.1.${host}/24` },
        ipv4VXLANTunnelAddr: `10.244.0.${host}`,
        vxlanTunnelMACAddr: `66:00:00:00:00:${host}`,
      },
    }) as Node;
  const snap = (felixConfigurations: NodeSnapshot["felixConfigurations"]): NodeSnapshot => ({
    nodes: [node("n1", 11), node("n2", 12)],
    workloadEndpoints: [],
    pools: [pool("p", "10.244.0.0/16", { vxlanMode: "Always" })],
    affinities: [],
    felixConfigurations,
  });
  const render = (s: NodeSnapshot, opts = {}) =>
    renderOverlay(overlayInputOf(s, "n1", { fabric: { 4: { name: "eth0", mtu: 1500 } }, ...opts }));
  const vxlanMtu = (s: NodeSnapshot, opts = {}) =>
    render(s, opts).devices.find((d) => d.name === "vxlan.ocelot")?.mtu;

  it("without FelixConfiguration: the fabric interface's MTU minus VXLAN's 50", () => {
    expect(vxlanMtu(snap([]))).toBe(1450);
    expect(render(snap([])).podMtu).toBe(1450);
  });

  it("vxlanMTU of node.<name> over default sets the device and the pods", () => {
    const s = snap([
      { metadata: { name: "default" }, spec: { vxlanMTU: 1400 } },
      { metadata: { name: "node.n1" }, spec: { vxlanMTU: 1380 } },
      { metadata: { name: "node.n2" }, spec: { vxlanMTU: 1200 } },
    ]);
    expect(vxlanMtu(s)).toBe(1380);
    expect(render(s).podMtu).toBe(1380);
    // --mtu above it; FELIX_VXLANMTU above the datastore.
    expect(vxlanMtu(s, { mtu: 1300 })).toBe(1300);
    expect(vxlanMtu(s, { felixEnv: { vxlanMTU: "1360" } })).toBe(1360);
  });

  it("mtuIfacePattern: the host MTU from the matching running links; none matching is named", () => {
    const s = snap([{ metadata: { name: "default" }, spec: { mtuIfacePattern: "^(eth|ens)" } }]);
    const hostLinks = [link("eth0", 1500), link("ens9", 1400), link("ens10", 1000, false)];
    expect(vxlanMtu(s, { hostLinks })).toBe(1350);
    expect(vxlanMtu(s, { hostLinks: [link("wg0", 1400)] })).toBe(1450);
    expect(storedOnlyWarnings(s, "n1", { hostLinks: [link("wg0", 1400)] }).join()).toMatch(
      /no running interface matches/,
    );
    // The MTU fields are acted on: no "not acted on" warning names them.
    expect(storedOnlyWarnings(s, "n1", { hostLinks }).join()).not.toMatch(/not acted on/);
  });
});
