// `ocelot policy preview` end to end: the real bin/ocelot on a temp embedded store, with staged
// policies of each kind beside enforced ones; the output names the endpoints a staged policy
// selects and the policies in force now and after promotion. Also `ocelot ipam configure`
// writing the IPAMConfiguration resource that `ocelot get` shows.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";

const root = new URL("../../", import.meta.url).pathname;
const bin = join(root, "bin/ocelot");

const RESOURCES = `
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web-eth0, namespace: prod, labels: {app: web}}
spec: {node: n1, orchestrator: k8s, workload: web, pod: web, endpoint: eth0, interfaceName: cali1, ipNetworks: [10.0.0.5/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n2-k8s-db-eth0, namespace: prod, labels: {app: db}}
spec: {node: n2, orchestrator: k8s, workload: db, pod: db, endpoint: eth0, interfaceName: cali2, ipNetworks: [10.0.1.6/32]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db-ingress}
spec: {selector: app == 'db', order: 100, ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: allow-web, namespace: prod}
spec: {selector: app == 'web', order: 10, ingress: [{action: Allow, source: {selector: app == 'db'}}]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: db-ingress}
spec: {stagedAction: Delete}
`;

describe("ocelot policy preview", () => {
  let dir: string;
  let url: string;
  const ocelot = (args: string[], input?: string) =>
    runSync(bin, [...args, "--datastore", url], { input });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-preview-"));
    url = `file:${join(dir, "store.db")}`;
    const r = ocelot(["apply", "-f", "-"], RESOURCES);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("names what each staged policy selects and the policies now and after", () => {
    const r = ocelot(["policy", "preview"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      [
        "StagedNetworkPolicy prod/allow-web (stagedAction Set): selects 1 endpoint(s): prod/n1-k8s-web-eth0",
        "  prod/n1-k8s-web-eth0 ingress:",
        "    now:   (not policed: allowed)",
        "    after: prod/allow-web, <end of tier: Deny>",
      ].join("\n"),
    );
    expect(r.stdout).toContain(
      [
        "StagedGlobalNetworkPolicy db-ingress (stagedAction Delete): selects 1 endpoint(s): prod/n2-k8s-db-eth0",
        "  prod/n2-k8s-db-eth0 ingress:",
        "    now:   db-ingress, <end of tier: Deny>",
        "    after: (not policed: allowed)",
      ].join("\n"),
    );
  });

  it("--json for one policy; an unknown name is an error naming it", () => {
    const r = ocelot(["policy", "preview", "prod/allow-web", "--json"]);
    expect(r.status).toBe(0);
    const [p] = JSON.parse(r.stdout);
    expect(p).toMatchObject({ kind: "StagedNetworkPolicy", selects: ["prod/n1-k8s-web-eth0"] });
    const bad = ocelot(["policy", "preview", "nope"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('no staged policy named "nope"');
  });

  it("ipam configure writes the IPAMConfiguration resource that get shows", () => {
    expect(ocelot(["ipam", "configure", "--maxblocksperhost=3"]).status).toBe(0);
    const r = ocelot(["get", "ipamconfigurations", "default", "-o", "json"]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).spec).toEqual({
      strictAffinity: false,
      maxBlocksPerHost: 3,
      autoAllocateBlocks: true,
    });
  });
});
