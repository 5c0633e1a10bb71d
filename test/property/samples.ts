// Valid documents of every kind Ocelot stores (src/api/registry.ts), for the bad-input property
// tests (issue 17): each one small but with the fields that carry rules (CIDRs, selectors, ports,
// ASNs, enums), so a mutation has something to break. A kind added to the registry without a
// sample here fails test/property/kinds.property.test.ts.
import type { Json } from "./mutations.js";

const V3 = "projectcalico.org/v3";

/** Keyed by `apiVersion/kind` (Kubernetes' NetworkPolicy and Calico's share a kind). */
export const SAMPLES: Record<string, Json> = {
  [`${V3}/IPPool`]: {
    apiVersion: V3,
    kind: "IPPool",
    metadata: { name: "pool-a" },
    spec: {
      cidr: "10.244.0.0/16",
      blockSize: 26,
      ipipMode: "Never",
      vxlanMode: "CrossSubnet",
      natOutgoing: true,
      nodeSelector: "all()",
      allowedUses: ["Workload", "Tunnel"],
    },
  },
  [`${V3}/IPReservation`]: {
    apiVersion: V3,
    kind: "IPReservation",
    metadata: { name: "reserved" },
    spec: { reservedCIDRs: ["10.244.1.0/28", "fd00:10::/120"] },
  },
  [`${V3}/BGPConfiguration`]: {
    apiVersion: V3,
    kind: "BGPConfiguration",
    metadata: { name: "default" },
    spec: {
      logSeverityScreen: "Info",
      nodeToNodeMeshEnabled: false,
      asNumber: 64512,
      serviceClusterIPs: [{ cidr: "10.96.0.0/12" }],
      listenPort: 179,
    },
  },
  [`${V3}/BGPPeer`]: {
    apiVersion: V3,
    kind: "BGPPeer",
    metadata: { name: "tor-a" },
    spec: {
      peerIP: "10.0.0.254",
      asNumber: 65001,
      nodeSelector: "rack == 'a'",
      keepOriginalNextHop: false,
    },
  },
  [`${V3}/BGPFilter`]: {
    apiVersion: V3,
    kind: "BGPFilter",
    metadata: { name: "only-pods" },
    spec: {
      exportV4: [
        {
          action: "Accept",
          matchOperator: "In",
          cidr: "10.244.0.0/16",
          prefixLength: { min: 24, max: 32 },
          operations: [
            { addCommunity: { value: "64512:100" } },
            { prependASPath: { prefix: [64512] } },
          ],
        },
      ],
      importV4: [{ action: "Reject", matchOperator: "Equal", cidr: "0.0.0.0/0" }],
      exportV6: [{ action: "Accept", matchOperator: "In", cidr: "fd00:10::/48" }],
    },
  },
  [`${V3}/Node`]: {
    apiVersion: V3,
    kind: "Node",
    metadata: { name: "node-1", labels: { rack: "a" } },
    spec: { bgp: { ipv4Address: "10.0.0.1/24", asNumber: 64513 } },
  },
  [`${V3}/WorkloadEndpoint`]: {
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: {
      name: "node--1-k8s-web--0-eth0",
      namespace: "prod",
      labels: { app: "web" },
    },
    spec: {
      orchestrator: "k8s",
      node: "node-1",
      pod: "web-0",
      endpoint: "eth0",
      containerID: "0123456789ab",
      interfaceName: "cali0123456789a",
      mac: "ee:ee:ee:ee:ee:ee",
      ipNetworks: ["10.244.0.5/32"],
      profiles: ["kns.prod"],
      ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    },
  },
  [`${V3}/NetworkPolicy`]: {
    apiVersion: V3,
    kind: "NetworkPolicy",
    metadata: { name: "allow-web", namespace: "prod" },
    spec: {
      order: 100,
      selector: "app == 'web'",
      types: ["Ingress", "Egress"],
      ingress: [
        {
          action: "Allow",
          protocol: "TCP",
          source: { selector: "role == 'lb'", nets: ["10.0.0.0/8"] },
          destination: { ports: [80, "8000:8080"] },
        },
      ],
      egress: [{ action: "Allow" }],
    },
  },
  [`${V3}/GlobalNetworkPolicy`]: {
    apiVersion: V3,
    kind: "GlobalNetworkPolicy",
    metadata: { name: "deny-db" },
    spec: {
      order: 10,
      selector: "tier == 'db'",
      ingress: [{ action: "Deny", protocol: "UDP", destination: { ports: [53] } }],
    },
  },
  ["networking.k8s.io/v1/NetworkPolicy"]: {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "allow-frontend", namespace: "prod" },
    spec: {
      podSelector: { matchLabels: { app: "api" } },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { app: "frontend" } } }],
          ports: [{ protocol: "TCP", port: 8080 }],
        },
      ],
    },
  },
  ["v1/Service"]: {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: "prod" },
    spec: {
      type: "ClusterIP",
      clusterIP: "10.96.0.10",
      ports: [{ name: "http", protocol: "TCP", port: 80 }],
    },
  },
  ["discovery.k8s.io/v1/EndpointSlice"]: {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: "web-abc12",
      namespace: "prod",
      labels: { "kubernetes.io/service-name": "web" },
    },
    addressType: "IPv4",
    endpoints: [{ addresses: ["10.244.0.5"], conditions: { ready: true } }],
    ports: [{ name: "http", protocol: "TCP", port: 8080 }],
  },
  [`${V3}/StagedNetworkPolicy`]: {
    apiVersion: V3,
    kind: "StagedNetworkPolicy",
    metadata: { name: "try-web", namespace: "prod" },
    spec: {
      stagedAction: "Set",
      order: 100,
      selector: "app == 'web'",
      ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [443] } }],
    },
  },
  [`${V3}/StagedGlobalNetworkPolicy`]: {
    apiVersion: V3,
    kind: "StagedGlobalNetworkPolicy",
    metadata: { name: "try-db" },
    spec: {
      stagedAction: "Set",
      order: 10,
      selector: "tier == 'db'",
      egress: [{ action: "Deny", protocol: "UDP", destination: { ports: [53] } }],
    },
  },
  [`${V3}/StagedKubernetesNetworkPolicy`]: {
    apiVersion: V3,
    kind: "StagedKubernetesNetworkPolicy",
    metadata: { name: "try-api", namespace: "prod" },
    spec: {
      stagedAction: "Set",
      podSelector: { matchLabels: { app: "api" } },
      policyTypes: ["Ingress"],
      ingress: [{ ports: [{ protocol: "TCP", port: 8080 }] }],
    },
  },
  [`${V3}/Tier`]: {
    apiVersion: V3,
    kind: "Tier",
    metadata: { name: "security" },
    spec: { order: 100, defaultAction: "Deny" },
  },
  [`${V3}/Profile`]: {
    apiVersion: V3,
    kind: "Profile",
    metadata: { name: "kns.prod" },
    spec: {
      labelsToApply: { "pcns.team": "web" },
      ingress: [{ action: "Allow" }],
      egress: [{ action: "Allow" }],
    },
  },
  [`${V3}/HostEndpoint`]: {
    apiVersion: V3,
    kind: "HostEndpoint",
    metadata: { name: "node-1-eth0", labels: { role: "host" } },
    spec: {
      node: "node-1",
      interfaceName: "eth0",
      expectedIPs: ["10.0.0.1"],
      profiles: ["kns.prod"],
      ports: [{ name: "ssh", protocol: "TCP", port: 22 }],
    },
  },
  [`${V3}/GlobalNetworkSet`]: {
    apiVersion: V3,
    kind: "GlobalNetworkSet",
    metadata: { name: "blocked", labels: { role: "blocked" } },
    spec: { nets: ["192.0.2.0/24", "2001:db8::/32"] },
  },
  [`${V3}/NetworkSet`]: {
    apiVersion: V3,
    kind: "NetworkSet",
    metadata: { name: "partners", namespace: "prod", labels: { role: "partner" } },
    spec: { nets: ["198.51.100.0/24"] },
  },
  [`${V3}/FelixConfiguration`]: {
    apiVersion: V3,
    kind: "FelixConfiguration",
    metadata: { name: "default" },
    spec: {
      logSeverityScreen: "Info",
      routeRefreshInterval: "90s",
      iptablesRefreshInterval: "90s",
      defaultEndpointToHostAction: "Drop",
    },
  },
  [`${V3}/IPAMConfiguration`]: {
    apiVersion: V3,
    kind: "IPAMConfiguration",
    metadata: { name: "default" },
    spec: { strictAffinity: false, maxBlocksPerHost: 4 },
  },
  [`${V3}/KubeControllersConfiguration`]: {
    apiVersion: V3,
    kind: "KubeControllersConfiguration",
    metadata: { name: "default" },
    spec: {
      logSeverityScreen: "Info",
      healthChecks: "Enabled",
      controllers: { node: { reconcilerPeriod: "5m" }, policy: { reconcilerPeriod: "5m" } },
    },
  },
  [`${V3}/ClusterInformation`]: {
    apiVersion: V3,
    kind: "ClusterInformation",
    metadata: { name: "default" },
    spec: {
      clusterGUID: "0123456789abcdef0123456789abcdef",
      clusterType: "k8s,bgp",
      calicoVersion: "v3.30.0",
      datastoreReady: true,
    },
  },
  [`${V3}/CalicoNodeStatus`]: {
    apiVersion: V3,
    kind: "CalicoNodeStatus",
    metadata: { name: "node-1-status" },
    spec: { node: "node-1", classes: ["Agent", "BGP", "Routes"], updatePeriodSeconds: 10 },
  },
};
