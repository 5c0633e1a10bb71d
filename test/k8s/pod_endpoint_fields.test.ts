// Calico's pod annotations for WorkloadEndpoint fields (src/k8s/pod_endpoint_fields.ts): floating
// IPs to the pod's address of their family behind Calico's feature switch, spoofing prefixes as
// ParseCIDR reads them, bandwidth quantities with libcalico-go's ranges and default burst, the
// packet rates and connection limits with their defaults, DSCP named, bad ones refused naming the annotation.
import { describe, expect, it } from "vitest";
import { parseQuantity, podEndpointFields } from "../../src/k8s/pod_endpoint_fields.js";

const A = "cni.projectcalico.org/";
const POD = [
  { family: 4 as const, address: "10.65.0.2" },
  { family: 6 as const, address: "fd00::2" },
];
const on = { floatingIpsEnabled: true };

describe("Kubernetes quantities", () => {
  it("reads decimal and binary suffixes and exponents, rounding up", () => {
    expect(parseQuantity("10M")).toBe(10_000_000);
    expect(parseQuantity("1Gi")).toBe(2 ** 30);
    expect(parseQuantity("1.5k")).toBe(1500);
    expect(parseQuantity("1e6")).toBe(1_000_000);
    expect(parseQuantity("100")).toBe(100);
    expect(parseQuantity("1500m")).toBe(2);
    expect(parseQuantity("10 M")).toBeUndefined();
    expect(parseQuantity("ten")).toBeUndefined();
  });
});

describe("pod endpoint annotations", () => {
  it("floatingIPs: one NAT per address to the pod's address of its family", () => {
    const f = podEndpointFields(
      { [`${A}floatingIPs`]: '["203.0.113.5", "2001:db8:0::5"]' },
      POD,
      on,
    );
    expect(f.ipNATs).toEqual([
      { internalIP: "10.65.0.2", externalIP: "203.0.113.5" },
      { internalIP: "fd00::2", externalIP: "2001:db8::5" },
    ]);
  });

  it("floatingIPs are refused without the feature, for a family the pod lacks, and when bad", () => {
    const ann = { [`${A}floatingIPs`]: '["203.0.113.5"]' };
    expect(() => podEndpointFields(ann, POD, { floatingIpsEnabled: false })).toThrow(
      /floatingIPs: requested feature is not enabled: floating_ips/,
    );
    expect(() => podEndpointFields(ann, [POD[1] as (typeof POD)[number]], on)).toThrow(
      /is IPv4 and the pod has no IPv4 address/,
    );
    expect(() => podEndpointFields({ [`${A}floatingIPs`]: '["1.2.3"]' }, POD, on)).toThrow(
      /floatingIPs: "1.2.3" is not an IP address/,
    );
    expect(() => podEndpointFields({ [`${A}floatingIPs`]: "1.2.3.4" }, POD, on)).toThrow(
      /floatingIPs: .* is not JSON/,
    );
  });

  it("allowedSourcePrefixes: CIDRs, host bits masked; a bare address is refused as Calico's", () => {
    expect(
      podEndpointFields({ [`${A}allowedSourcePrefixes`]: '["8.8.8.8/32", "1.1.1.7/24"]' }, POD, on)
        .allowSpoofedSourcePrefixes,
    ).toEqual(["8.8.8.8/32", "1.1.1.0/24"]);
    expect(() =>
      podEndpointFields({ [`${A}allowedSourcePrefixes`]: '["8.8.8.8"]' }, POD, on),
    ).toThrow(/allowedSourcePrefixes: "8.8.8.8" is not a CIDR/);
  });

  it("QoS: quantities, the default bursts, ranges clamped, a lone packet burst, DSCP by name", () => {
    const f = podEndpointFields(
      {
        "kubernetes.io/ingress-bandwidth": "10M",
        "qos.projectcalico.org/egressBandwidth": "100",
        "qos.projectcalico.org/egressBurst": "2k",
        "qos.projectcalico.org/ingressPacketRate": "100",
        "qos.projectcalico.org/egressPacketBurst": "7",
        "qos.projectcalico.org/egressMaxConnections": "20",
        "qos.projectcalico.org/dscp": "ef",
      },
      POD,
      on,
    );
    expect(f.qosControls).toEqual({
      ingressBandwidth: 10_000_000,
      ingressBurst: 4 * 2 ** 30,
      egressBandwidth: 1000,
      egressBurst: 2000,
      ingressPacketRate: 100,
      ingressPacketBurst: 5,
      egressMaxConnections: 20,
      dscp: "EF",
    });
    expect(f.warnings).toEqual([
      expect.stringMatching(
        /egressBandwidth: 100 is outside 1000\.\.1000000000000000; set to 1000/,
      ),
      expect.stringMatching(/egressPacketBurst: needs egressPacketRate; ignored/),
    ]);
  });

  it("DSCP: digits as the number, an invalid code point left out with a warning (as libcalico-go)", () => {
    expect(podEndpointFields({ "qos.projectcalico.org/dscp": "46" }, POD, on)).toEqual({
      qosControls: { dscp: 46 },
      warnings: [],
    });
    const bad = podEndpointFields({ "qos.projectcalico.org/dscp": "64" }, POD, on);
    expect(bad.qosControls).toBeUndefined();
    expect(bad.warnings).toEqual([expect.stringMatching(/dscp: "64" is not a DSCP value/)]);
  });

  it("no annotations: no fields", () => {
    expect(podEndpointFields({}, POD, on)).toEqual({ warnings: [] });
  });
});
