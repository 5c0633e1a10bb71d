// src/k8s/pod_ipam.ts: Calico's IPAM pod annotations, parsed and checked (pure).
import { describe, expect, it } from "vitest";
import { PodAnnotationError, podIpam } from "../../src/k8s/pod_ipam.js";

const A = "cni.projectcalico.org/";
const on = { ipAddrsNoIpamEnabled: true };
const off = { ipAddrsNoIpamEnabled: false };

describe("Calico's IPAM pod annotations", () => {
  it("none: nothing requested", () => {
    expect(podIpam({ other: "x" }, off)).toEqual({});
  });

  it("ipv4pools / ipv6pools: JSON lists of pool names or CIDRs", () => {
    expect(
      podIpam(
        { [`${A}ipv4pools`]: '["pool-a", "10.1.0.0/16"]', [`${A}ipv6pools`]: '[" fd00::/48 "]' },
        off,
      ),
    ).toEqual({ ipv4Pools: ["pool-a", "10.1.0.0/16"], ipv6Pools: ["fd00::/48"] });
  });

  it("ipAddrs and ipAddrsNoIpam: addresses in canonical form, at most one per family", () => {
    expect(podIpam({ [`${A}ipAddrs`]: '["10.0.0.5", "FD00::0:5"]' }, off)).toEqual({
      ipAddrs: [
        { family: 4, address: "10.0.0.5" },
        { family: 6, address: "fd00::5" },
      ],
    });
    expect(podIpam({ [`${A}ipAddrsNoIpam`]: '["10.0.0.6"]' }, on)).toEqual({
      ipAddrsNoIpam: [{ family: 4, address: "10.0.0.6" }],
    });
  });

  it.each([
    [{ [`${A}ipv4pools`]: "pool-a" }, off, `${A}ipv4pools: "pool-a" is not JSON`],
    [
      { [`${A}ipv4pools`]: '{"a":1}' },
      off,
      `${A}ipv4pools: "{\\"a\\":1}" is not a JSON list of non-empty strings`,
    ],
    [{ [`${A}ipv6pools`]: "[]" }, off, `${A}ipv6pools: the list is empty`],
    [{ [`${A}ipAddrs`]: '["10.0.0.300"]' }, off, `${A}ipAddrs: "10.0.0.300" is not an IP address`],
    [
      { [`${A}ipAddrs`]: '["10.0.0.1", "10.0.0.2"]' },
      off,
      `${A}ipAddrs: more than one IPv4 address`,
    ],
    [
      { [`${A}ipAddrs`]: '["10.0.0.1"]', [`${A}ipAddrsNoIpam`]: '["10.0.0.2"]' },
      on,
      `${A}ipAddrs and ${A}ipAddrsNoIpam cannot both be set`,
    ],
    [
      { [`${A}ipAddrsNoIpam`]: '["10.0.0.2"]' },
      off,
      `${A}ipAddrsNoIpam needs "feature_control": {"ip_addrs_no_ipam": true}`,
    ],
  ])("refused with the annotation named: %j", (annotations, opts, message) => {
    expect(() => podIpam(annotations, opts)).toThrow(PodAnnotationError);
    expect(() => podIpam(annotations, opts)).toThrow(message);
  });
});
