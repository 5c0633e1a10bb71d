// The node-to-node mesh signed with BGPConfiguration nodeMeshPassword: two real `ocelot node run`
// on one veth link, each with its own --secrets-dir. Node b's secret file is missing at first: it
// warns and runs no mesh session (never unsigned), so a's session to b does not come up; once the
// file is written, b's periodic resync (2 s here) reads it and both sessions are Established with
// TCP-MD5 (`md5` in `ocelot status`, the kernel socket keyed), and each learns the other's block.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  daemonTestsUnavailable,
  type MeshNode,
  peerStatus,
  startMeshNodes,
  stopMeshNodes,
} from "./harness.js";

const skip = skipWithReason("ocelot node run nodeMeshPassword", daemonTestsUnavailable());
const KEY = "mesh key";

interface Peer {
  address: string;
  state: string;
  md5?: boolean;
}

describe.skipIf(skip)("ocelot node run: nodeMeshPassword signs the mesh", () => {
  let dir: string;
  let store: SqliteDatastore;
  const nodes: (MeshNode & { secrets: string })[] = [];
  const status = (i: number) => peerStatus<Peer>(join(dir, `${nodes[i]?.name}.sock`));
  const logs = () => nodes.map((n) => n.daemon?.log).join("\n");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-meshpw-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await new ResourceClient(store).write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "BGPConfiguration",
      metadata: { name: "default" },
      spec: { nodeMeshPassword: { secretKeyRef: { name: "bgp", key: "mesh" } } },
    });
    for (const [i, name] of ["mpw-a", "mpw-b"].entries()) {
      const secrets = join(dir, `secrets-${name}`, "bgp");
      mkdirSync(secrets, { recursive: true });
      nodes.push({ name, ns: Netns.create(`mpw${i}`), ip: `10.95.0.${i + 1}`, secrets });
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    writeFileSync(join(a.secrets, "mesh"), `${KEY}\n`, { mode: 0o600 });
    link(a.ns, "eth0", `${a.ip}/24`, b.ns, "eth0", `${b.ip}/24`);
    await startMeshNodes(nodes, `file:${join(dir, "store.db")}`, dir, (n) => [
      "--secrets-dir",
      join(n.secrets, ".."),
      "--resync-interval",
      "2s",
    ]);
  });

  afterAll(async () => {
    await stopMeshNodes(nodes);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a node without the secret file runs no mesh session and says why", async () => {
    await waitFor(
      "mpw-b to warn about the missing mesh secret",
      () =>
        /nodeMeshPassword: cannot read .*mesh sessions skipped/.test(nodes[1]?.daemon?.log ?? ""),
      10_000,
      100,
    );
    expect(status(1)).toEqual([]);
    expect(status(0).map((p) => [p.address, p.md5])).toEqual([["10.95.0.2", true]]);
    // a keeps trying; b has no session for it: nothing comes up within a few seconds.
    await new Promise((r) => setTimeout(r, 1500));
    expect(status(0)[0]?.state).not.toBe("Established");
  });

  it("once the file is there, the resync picks it up: both sessions Established, signed", async () => {
    writeFileSync(join(nodes[1]?.secrets as string, "mesh"), `${KEY}\n`, { mode: 0o600 });
    await waitFor(
      "both mesh sessions Established",
      () => [0, 1].every((i) => status(i).some((p) => p.state === "Established")),
      20_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    expect(status(1).map((p) => [p.address, p.md5])).toEqual([["10.95.0.1", true]]);
    const ss = nodes[0]?.ns.exec("ss", "-tniH", "state", "established") ?? "";
    expect(ss).toMatch(/md5keys:10\.95\.0\.2\/32=/);
    expect(logs()).not.toContain(KEY);
  });
});
