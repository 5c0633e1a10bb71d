// WorkloadEndpoint ipNATs, allowSpoofedSourcePrefixes and qosControls as Calico's validator takes
// them (libcalico-go validateIPNAT, validateWorkloadEndpointSpec; QoSControls' int64 fields), and
// the QoS subfield Ocelot refuses by name (DSCP).
import { describe, expect, it } from "vitest";
import { formatIssue, ValidationError } from "../../src/api/errors.js";
import { validateResource } from "../../src/api/registry.js";

const wep = (spec: Record<string, unknown>) => ({
  apiVersion: "projectcalico.org/v3",
  kind: "WorkloadEndpoint",
  metadata: { name: "n1-k8s-p-eth0", namespace: "default" },
  spec: { interfaceName: "ocl0123", ipNetworks: ["10.65.0.2/32", "fd00::2/128"], ...spec },
});

function issuesOf(doc: unknown): string[] {
  try {
    validateResource(doc);
  } catch (err) {
    if (err instanceof ValidationError) return err.issues.map(formatIssue);
    throw err;
  }
  return [];
}

describe("WorkloadEndpoint ipNATs (validateIPNAT, validateWorkloadEndpointSpec)", () => {
  it("accepts NATs of the endpoint's own addresses, both families, canonical", () => {
    const { resource } = validateResource(
      wep({
        ipNATs: [
          { internalIP: "10.65.0.2", externalIP: "203.0.113.5" },
          { internalIP: "fd00:0::2", externalIP: "2001:db8::5" },
        ],
      }),
    );
    expect((resource as { spec: { ipNATs: unknown } }).spec.ipNATs).toEqual([
      { internalIP: "10.65.0.2", externalIP: "203.0.113.5" },
      { internalIP: "fd00::2", externalIP: "2001:db8::5" },
    ]);
  });

  it("refuses a NAT whose internal IP is not the endpoint's (NAT is not in the endpoint networks)", () => {
    expect(
      issuesOf(wep({ ipNATs: [{ internalIP: "10.65.0.9", externalIP: "203.0.113.5" }] })),
    ).toEqual([
      expect.stringMatching(/spec\.ipNATs\[0\]\.internalIP.*not in the endpoint's ipNetworks/),
    ]);
  });

  it("refuses mixed families and a bad address, naming the field", () => {
    expect(
      issuesOf(wep({ ipNATs: [{ internalIP: "10.65.0.2", externalIP: "2001:db8::5" }] })),
    ).toEqual([expect.stringMatching(/spec\.ipNATs\[0\]\.externalIP.*mismatched IP versions/)]);
    expect(
      issuesOf(wep({ ipNATs: [{ internalIP: "10.65.0.2", externalIP: "203.0.113" }] })),
    ).toEqual([expect.stringMatching(/spec\.ipNATs\[0\]\.externalIP.*not a valid IP address/)]);
  });
});

describe("WorkloadEndpoint allowSpoofedSourcePrefixes", () => {
  it("accepts CIDRs and bare IPs (Calico's cidr validator), refuses a bad one by index", () => {
    expect(issuesOf(wep({ allowSpoofedSourcePrefixes: ["10.0.0.1", "192.168.0.0/16"] }))).toEqual(
      [],
    );
    expect(issuesOf(wep({ allowSpoofedSourcePrefixes: ["10.0.0.0/8", "10.abcd"] }))).toEqual([
      expect.stringMatching(/spec\.allowSpoofedSourcePrefixes\[1\].*not a valid CIDR/),
    ]);
  });
});

describe("WorkloadEndpoint qosControls", () => {
  it("accepts the bandwidth fields (bits per second, burst in bits, minburst in bytes)", () => {
    expect(
      issuesOf(
        wep({
          qosControls: {
            ingressBandwidth: 10_000_000,
            ingressBurst: 1_000_000,
            egressBandwidth: 5_000_000,
            egressBurst: 0,
            egressPeakrate: 6_000_000,
            egressMinburst: 1500,
          },
        }),
      ),
    ).toEqual([]);
  });

  it("accepts packet rates, connection limits and DSCP (numorstring.DSCP); refuses a bad code point", () => {
    expect(
      issuesOf(
        wep({
          qosControls: { ingressPacketRate: 100, ingressPacketBurst: 10, egressMaxConnections: 10 },
        }),
      ),
    ).toEqual([]);
    for (const dscp of ["EF", "af11", "cs6", 0, 63, "46", " DF "])
      expect(issuesOf(wep({ qosControls: { dscp } }))).toEqual([]);
    for (const dscp of [64, -1, 1.5, "AF14", "64", ""])
      expect(issuesOf(wep({ qosControls: { dscp } }))).toEqual([
        expect.stringMatching(/qosControls\.dscp.*is not a DSCP value/),
      ]);
  });

  it("refuses a negative or fractional value and an unknown field", () => {
    expect(issuesOf(wep({ qosControls: { ingressBandwidth: -1 } }))).toEqual([
      expect.stringMatching(/qosControls\.ingressBandwidth.*not an integer/),
    ]);
    expect(issuesOf(wep({ qosControls: { egressBurst: 1.5 } }))).toEqual([
      expect.stringMatching(/qosControls\.egressBurst.*not an integer/),
    ]);
    expect(issuesOf(wep({ qosControls: { ingresBandwidth: 1 } }))).toEqual([
      expect.stringMatching(/ingresBandwidth/),
    ]);
  });
});
