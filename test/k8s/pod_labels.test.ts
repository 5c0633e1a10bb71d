// The pure part of the Kubernetes facts: endpoint labels from a pod and its namespace (Calico's
// keys win), and the CNI netconf's `kubernetes.kubeconfig` / KUBECONFIG setting.
import { describe, expect, it } from "vitest";
import { parseNetConf } from "../../src/cni/plugin.js";
import { endpointLabels, podFacts } from "../../src/k8s/pod_labels.js";

const base = {
  cniVersion: "1.0.0",
  name: "net",
  type: "ocelot-cni",
  datastore: "file:/tmp/x.db",
  ipam: { type: "ocelot-ipam" },
};
const parse = (extra: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  parseNetConf(JSON.stringify({ ...base, ...extra }), env, () => "node-a");

describe("endpoint labels from Kubernetes facts", () => {
  it("pod labels, pcns.* namespace labels, service account; Calico's keys win over the pod's", () => {
    const facts = podFacts(
      {
        metadata: { labels: { app: "web", "projectcalico.org/namespace": "spoofed", n: 1 } },
        spec: { serviceAccountName: "sa" },
      },
      { metadata: { labels: { team: "a" } } },
    );
    expect(endpointLabels("team-a", "k8s", facts)).toEqual({
      app: "web",
      "pcns.team": "a",
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
      "projectcalico.org/serviceaccount": "sa",
    });
  });

  it("without facts: Calico's two labels only; an empty service account adds none", () => {
    expect(endpointLabels("ns", "cni")).toEqual({
      "projectcalico.org/namespace": "ns",
      "projectcalico.org/orchestrator": "cni",
    });
    expect(podFacts({ spec: { serviceAccountName: "" } }, {})).toEqual({
      labels: {},
      namespaceLabels: {},
    });
  });
});

describe("the pod's ports as the WorkloadEndpoint's (libcalico-go appendEndpointPorts)", () => {
  it("named ports and host ports of containers and init containers; TCP by default; others left out", () => {
    const facts = podFacts(
      {
        spec: {
          containers: [
            {
              ports: [
                { name: "http", containerPort: 8080 },
                { name: "dns", containerPort: 53, protocol: "UDP" },
                { containerPort: 9090 }, // no name, no host port: left out
                { containerPort: 443, hostPort: 8443, hostIP: "192.0.2.1" },
                { name: "odd", containerPort: 7, protocol: "ICMP" }, // not a port protocol
              ],
            },
            { name: "no-ports" },
          ],
          initContainers: [{ ports: [{ name: "metrics", containerPort: 9100, protocol: "SCTP" }] }],
        },
      },
      {},
    );
    expect(facts.ports).toEqual([
      { name: "http", protocol: "TCP", port: 8080 },
      { name: "dns", protocol: "UDP", port: 53 },
      { protocol: "TCP", port: 443, hostPort: 8443, hostIP: "192.0.2.1" },
      { name: "metrics", protocol: "SCTP", port: 9100 },
    ]);
    expect(podFacts({ spec: { containers: [{ ports: [{ containerPort: 80 }] }] } }, {})).toEqual({
      labels: {},
      namespaceLabels: {},
    });
  });
});

describe("netconf kubernetes.kubeconfig", () => {
  it("takes Calico's key, else KUBECONFIG, else none", () => {
    expect(
      parse({ kubernetes: { kubeconfig: "/etc/k" } }, { KUBECONFIG: "/env/k" }).kubeconfig,
    ).toBe("/etc/k");
    expect(parse({}, { KUBECONFIG: "/env/k" }).kubeconfig).toBe("/env/k");
    expect(parse({}).kubeconfig).toBeUndefined();
  });

  it("refuses a relative path, a non-object and other keys by name", () => {
    expect(() => parse({ kubernetes: { kubeconfig: "k" } })).toThrow(
      'Field "kubernetes.kubeconfig" must be an absolute path, got "k"',
    );
    expect(() => parse({ kubernetes: "x" })).toThrow('Field "kubernetes" must be an object');
    expect(() => parse({ kubernetes: { k8s_api_root: "https://x" } })).toThrow(
      'Field "kubernetes.k8s_api_root" is not supported',
    );
  });
});
