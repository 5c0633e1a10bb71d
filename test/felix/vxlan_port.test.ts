// FelixConfiguration vxlanPort and vxlanVNI read (felixSettings, also from FELIX_VXLANPORT /
// FELIX_VXLANVNI) and given to the VXLAN devices (renderOverlay); the kernel and traffic proof
// is vxlan_port.netns.test.ts.
import { describe, expect, it } from "vitest";
import { felixEnvironment, felixSettings } from "../../src/felix/felix_config.js";
import { renderOverlay } from "../../src/felix/overlay.js";

describe("FelixConfiguration vxlanPort and vxlanVNI", () => {
  it("reads them, the environment over the datastore; a bad value is warned and the default kept", () => {
    expect(felixSettings({ vxlanPort: 4790, vxlanVNI: 5000 })).toMatchObject({
      vxlanPort: 4790,
      vxlanVni: 5000,
    });
    expect(
      felixSettings({ vxlanPort: 4790 }, felixEnvironment({ FELIX_VXLANPORT: "8472" })).vxlanPort,
    ).toBe(8472);
    const bad = felixSettings({ vxlanPort: 70000, vxlanVNI: 0 });
    expect(bad.vxlanPort).toBeUndefined();
    expect(bad.vxlanVni).toBeUndefined();
    expect(bad.warnings).toEqual([
      expect.stringMatching(/vxlanPort: 70000 is not an integer in 1\.\.65535/),
      expect.stringMatching(/vxlanVNI: 0 is not an integer in 1\.\.16777215/),
    ]);
  });

  it("the devices of both families take them (Felix's one VXLANVNI); unset: 4789, 4096 / 6096", () => {
    const input = {
      node: "n1",
      nodes: [
        {
          name: "n1",
          ipv4Address: "192.0.2.1/24",
          ipv6Address: "2001:db8::1/64",
          vxlanV4: { address: "10.0.0.1", mac: "66:00:00:00:00:01" },
          vxlanV6: { address: "fd00::1", mac: "66:00:00:00:00:02" },
        },
      ],
      pools: [
        { cidr: "10.0.0.0/16", vxlanMode: "Always" as const, ipipMode: "Never" as const },
        { cidr: "fd00::/64", vxlanMode: "Always" as const, ipipMode: "Never" as const },
      ],
      blocks: [],
      fabric: {},
    };
    const of = (o: ReturnType<typeof renderOverlay>) =>
      o.devices.map((d) => [d.name, d.vni, d.port]);
    expect(of(renderOverlay(input))).toEqual([
      ["vxlan.ocelot", 4096, 4789],
      ["vxlan-v6.ocelot", 6096, 4789],
    ]);
    expect(of(renderOverlay({ ...input, vxlan: { port: 4790, vni: 5000 } }))).toEqual([
      ["vxlan.ocelot", 5000, 4790],
      ["vxlan-v6.ocelot", 5000, 4790],
    ]);
  });
});
