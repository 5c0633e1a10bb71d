// Node and WorkloadEndpoint (projectcalico.org/v3): schemas and validation. A Node carries the
// BGP identity of a host (AS, addresses, route-reflector cluster ID); a WorkloadEndpoint is one
// pod interface. Not: writing them (the node daemon and the CNI plugin do) or storage.
//
// The node's tunnel addresses (IP-in-IP under spec.bgp, VXLAN per family with its VTEP MAC) are
// Calico's fields, written by the node daemon. A WorkloadEndpoint's 1:1 NATs (floating IPs),
// spoofed-source prefixes, QoS bandwidth controls and DSCP marking are Calico's fields too
// (src/felix acts on them). WireGuard's interface addresses (spec.wireguard) and public keys
// (status.wireguardPublicKey, …V6) are Calico's fields too: the node daemon writes the IPv4 ones
// (src/felix/wireguard.ts); the IPv6 ones are stored.
import * as z from "zod";
import { dscpValue } from "./dscp.js";
import { own, quote } from "./errors.js";
import {
  asNumber,
  cidr,
  intRange,
  ipAddress,
  labelName,
  type Metadata,
  metadataSchema,
  subdomainName,
  unsupported,
} from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** A MAC address "aa:bb:cc:dd:ee:ff", stored lower case. */
const macAddress = lazy(() =>
  z
    .string()
    .refine((s) => MAC_RE.test(s), {
      error: (iss) => own(`${quote(iss.input)} is not a MAC address`),
    })
    .transform((s) => s.toLowerCase()),
);

/**
 * A WireGuard public key: the standard base64 of 32 bytes (Calico's validateWireguardPublicKey,
 * wgtypes.ParseKey).
 */
const wireguardPublicKey = lazy(() =>
  z.string().refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s), {
    error: (iss) => own(`${quote(iss.input)} is not a WireGuard public key (base64 of 32 bytes)`),
  }),
);

const nodeBgpSpec = lazy(() =>
  z
    .object({
      asNumber: asNumber.optional(),
      ipv4Address: cidr({ family: 4, allowHostBits: true, allowBareIp: true }).optional(),
      ipv6Address: cidr({ family: 6, allowHostBits: true, allowBareIp: true }).optional(),
      ipv4IPIPTunnelAddr: ipAddress({ family: 4 }).optional(),
      routeReflectorClusterID: ipAddress({ family: 4 }).optional(),
    })
    .strict(),
);

const nodeSpec = lazy(() =>
  z
    .object({
      bgp: nodeBgpSpec
        .refine((b) => Object.keys(b).length > 0, {
          error: own("must not be empty when given (validateNodeSpec)"),
        })
        .optional(),
      addresses: z
        .array(
          z
            .object({
              address: z.string().min(1),
              type: z.enum(["InternalIP", "ExternalIP", "CalicoNodeIP"]).optional(),
            })
            .strict(),
        )
        .optional(),
      orchRefs: z
        .array(
          z.object({ nodeName: z.string().optional(), orchestrator: z.string().min(1) }).strict(),
        )
        .optional(),
      interfaceName: unsupported(),
      ipv4VXLANTunnelAddr: ipAddress({ family: 4 }).optional(),
      vxlanTunnelMACAddr: macAddress.optional(),
      ipv6VXLANTunnelAddr: ipAddress({ family: 6 }).optional(),
      vxlanTunnelMACAddrV6: macAddress.optional(),
      wireguard: z
        .object({
          interfaceIPv4Address: ipAddress({ family: 4 }).optional(),
          interfaceIPv6Address: ipAddress({ family: 6 }).optional(),
        })
        .strict()
        .optional(),
    })
    .strict(),
);

export const nodeSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("Node"),
      metadata: metadataSchema({ namespaced: false }),
      spec: nodeSpec.optional().transform((s) => s ?? {}),
      // calicoctl prints status; it is kept as given. Calico's daemon writes it; Ocelot's writes
      // wireguardPublicKey (its other fields are kept as given).
      status: z
        .object({
          podCIDRs: z.array(cidr()).optional(),
          wireguardPublicKey: wireguardPublicKey.optional(),
          wireguardPublicKeyV6: wireguardPublicKey.optional(),
        })
        .strict()
        .optional(),
    })
    .strict(),
);

export type NodeSpec = z.output<typeof nodeSpec>;
export interface Node {
  apiVersion: typeof API_VERSION;
  kind: "Node";
  metadata: Metadata;
  spec: NodeSpec;
  status?: { podCIDRs?: string[]; wireguardPublicKey?: string; wireguardPublicKeyV6?: string };
}

const endpointPort = lazy(() =>
  z
    .object({
      name: z.union([labelName, z.literal("")]).optional(),
      protocol: z.enum(["TCP", "UDP", "SCTP"]),
      port: z.number().int().min(1).max(65535),
      hostPort: z.number().int().min(0).max(65535).optional(),
      hostIP: ipAddress().optional(),
    })
    .strict()
    .superRefine((p, ctx) => {
      // validateWorkloadEndpointPort: a name unless a hostPort is given.
      if ((p.name === undefined || p.name === "") && (p.hostPort ?? 0) === 0)
        ctx.addIssue({
          code: "custom",
          path: ["name"],
          message: own("is required when no hostPort is given"),
        });
    }),
);

/** One 1:1 NAT (floating IP): both addresses of one family (libcalico-go validateIPNAT). */
const ipNat = lazy(() =>
  z
    .object({ internalIP: ipAddress(), externalIP: ipAddress() })
    .strict()
    .refine((n) => n.internalIP.includes(":") === n.externalIP.includes(":"), {
      path: ["externalIP"],
      error: own("is not of the internal IP's family (mismatched IP versions)"),
    }),
);

/** Calico's largest QoS value (int64 in its API; JavaScript numbers are exact to 2^53). */
const QOS_MAX = Number.MAX_SAFE_INTEGER;
const qosValue = lazy(() => intRange(0, QOS_MAX));

/**
 * QoS controls. Calico's API takes any int64 here (its ranges are checked where the Kubernetes
 * annotations are converted); the bandwidth fields act through tc (src/felix/qos.ts), packet
 * rates and connection limits through iptables (src/felix/iptables.ts).
 */
const qosControls = lazy(() =>
  z
    .object({
      ingressBandwidth: qosValue.optional(),
      ingressBurst: qosValue.optional(),
      ingressPeakrate: qosValue.optional(),
      ingressMinburst: qosValue.optional(),
      egressBandwidth: qosValue.optional(),
      egressBurst: qosValue.optional(),
      egressPeakrate: qosValue.optional(),
      egressMinburst: qosValue.optional(),
      ingressPacketRate: qosValue.optional(),
      ingressPacketBurst: qosValue.optional(),
      egressPacketRate: qosValue.optional(),
      egressPacketBurst: qosValue.optional(),
      ingressMaxConnections: qosValue.optional(),
      egressMaxConnections: qosValue.optional(),
      // numorstring.DSCP: 0..63, or a name (EF, AF11, CS1, ...); Felix marks egress with it.
      dscp: z
        .union([z.number(), z.string()])
        .refine((v) => dscpValue(v) !== undefined, {
          error: (iss) =>
            own(`${quote(iss.input)} is not a DSCP value (0..63, or DF, EF, AF11..AF43, CS0..CS6)`),
        })
        .optional(),
    })
    .strict(),
);

const workloadEndpointSpec = lazy(() =>
  z
    .object({
      orchestrator: z.string().optional(),
      workload: z.string().optional(),
      node: subdomainName.optional(),
      containerID: z
        .string()
        .regex(/^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/, {
          error: (iss) =>
            own(`${quote(iss.input)} is not a container ID (letters, digits and inner '-')`),
        })
        .optional(),
      pod: z.string().optional(),
      endpoint: z.string().optional(),
      serviceAccountName: z.string().optional(),
      // validateWorkloadEndpointSpec: only /32 (IPv4) and /128 (IPv6) networks.
      ipNetworks: z
        .array(
          cidr({ allowHostBits: false, allowBareIp: true }).refine(
            (c) => c.endsWith(c.includes(":") ? "/128" : "/32"),
            {
              error: (iss) =>
                own(
                  `${quote(iss.input)} holds more than one address (a workload's ipNetworks are /32 or /128)`,
                ),
            },
          ),
        )
        .optional(),
      ipv4Gateway: ipAddress({ family: 4 }).optional(),
      ipv6Gateway: ipAddress({ family: 6 }).optional(),
      profiles: z.array(z.string().min(1)).optional(),
      interfaceName: z
        .string()
        .refine((s) => /^[a-zA-Z0-9_.-]{1,15}$/.test(s), {
          error: (iss) =>
            own(
              `${quote(iss.input)} is not an interface name (1..15 of letters, digits, '_', '.', '-')`,
            ),
        })
        .optional(),
      mac: z
        .string()
        .refine((s) => MAC_RE.test(s), {
          error: (iss) => own(`${quote(iss.input)} is not a MAC address`),
        })
        .optional(),
      ports: z.array(endpointPort).optional(),
      ipNATs: z.array(ipNat).optional(),
      allowSpoofedSourcePrefixes: z
        .array(cidr({ allowHostBits: true, allowBareIp: true }))
        .optional(),
      qosControls: qosControls.optional(),
      awsElasticIPs: unsupported(),
    })
    .strict()
    .superRefine((s, ctx) => {
      // validateWorkloadEndpointSpec: each NAT's internal IP is one of the endpoint's networks.
      const nets = new Set((s.ipNetworks ?? []).map((n) => n.split("/")[0]));
      for (const [i, n] of (s.ipNATs ?? []).entries())
        if (!nets.has(n.internalIP))
          ctx.addIssue({
            code: "custom",
            path: ["ipNATs", i, "internalIP"],
            message: own(
              `${quote(n.internalIP)} is not in the endpoint's ipNetworks (NAT is not in the endpoint networks)`,
            ),
          });
    }),
);

export const workloadEndpointSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("WorkloadEndpoint"),
      metadata: metadataSchema({ namespaced: true }),
      // Calico requires an interface name (the validator's "no config" case).
      spec: workloadEndpointSpec.refine((s) => s.interfaceName !== undefined, {
        error: own("needs spec.interfaceName"),
      }),
    })
    .strict(),
);

export type WorkloadEndpointSpec = z.output<typeof workloadEndpointSpec>;
export interface WorkloadEndpoint {
  apiVersion: typeof API_VERSION;
  kind: "WorkloadEndpoint";
  metadata: Metadata;
  spec: WorkloadEndpointSpec;
}
