// `ocelot node run --policy-dispatch set` with real traffic: the real daemon in a node
// namespace, three pods wired by the real `bin/ocelot-cni` and labelled app=a/b/c, an HTTP
// server on B. A NetworkPolicy on B allowing app=a on TCP 8080 is enforced as with Felix's
// per-pod chains (A connects, C is refused, ICMP from A dropped, the node's own traffic and
// unselected pods untouched), but through the dispatch by set: B's ingress is a shared
// `ocl-tg-` chain reached by one `hash:net,iface` set rule, with B's interface a member of the
// set and no per-pod `ocl-tw-` chain. Deleting the policy restores traffic and removes the
// group chain. Read back with iptables-save and ipset save inside the node namespace.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";
import {
  addLabelledPods,
  B_FROM_A,
  connects,
  type Pod,
  pings,
  serveHttp,
} from "./policy_traffic.js";

const skip = skipWithReason("policy dispatch by set netns", daemonTestsUnavailable());
const NODE = "node-ds";
const POOL = "10.73.0.0/16";
const NP = kindOf("projectcalico.org/v3", "NetworkPolicy");

describe.skipIf(skip)("ocelot node run --policy-dispatch set, with real traffic", () => {
  let dir: string;
  let store: SqliteDatastore;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  let server: ChildProcess | undefined;
  let pods: Record<"a" | "b" | "c", Pod> | undefined;
  const save = (...args: string[]) => node.exec(...(args as [string, ...string[]]));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-dispatch-set-"));
    const url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    node = Netns.create("dsn");
    addUplink(node, "192.0.2.21/24");
    daemon = await startNode(node, [
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.21/24",
      "--datastore",
      url,
      "--status-socket",
      join(dir, "bgp.sock"),
      "--policy-dispatch",
      "set",
    ]);
    pods = await addLabelledPods(node, store, url, NODE, "pool", "dsp");
    server = serveHttp(pods.b);
    const { a, b } = pods;
    await waitFor(
      "the server on pod B and every pod route",
      () => connects(a.ns, b, true),
      15_000,
      200,
    );
  });

  afterAll(async () => {
    if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
    await daemon?.stop();
    for (const p of Object.values(pods ?? {})) p.ns.destroy();
    node?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const groupChain = () => /^:(ocl-tg-\S+) /m.exec(save("iptables-save", "-t", "filter"))?.[1];

  it("a NetworkPolicy on B: enforced through a group chain and B's interface in its set, no per-pod chain", async () => {
    const { a, b, c } = pods as Record<"a" | "b" | "c", Pod>;
    await applyResource(store, B_FROM_A);
    await waitFor(
      "a group chain in iptables-save",
      () => groupChain() !== undefined,
      30_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${daemon?.log}`);
    });
    expect(connects(a.ns, b, true)).toBe(true);
    expect(connects(c.ns, b, false)).toBe(false);
    expect(pings(a.ns, b, false)).toBe(false);
    expect(pings(node, b, true)).toBe(true);
    expect(pings(c.ns, a, true)).toBe(true);
    expect(pings(b.ns, c, true)).toBe(true);
    const filter = save("iptables-save", "-t", "filter");
    expect(filter).not.toMatch(/ocl-(tw|fw)-/);
    const tg = groupChain() as string;
    // One set rule dispatches the group: B's interface is a member of that set.
    const set = new RegExp(`-A ocl-to-wl-dispatch -m set --match-set (\\S+) dst,dst -g ${tg}`).exec(
      filter,
    )?.[1];
    expect(set, filter).toBeDefined();
    const members = save("ipset", "save", set as string);
    expect(members).toContain(`,${b.iface}`);
    expect(members).not.toContain(`,${a.iface}`);
    expect(members).not.toContain(`,${c.iface}`);
  });

  it("deleting the policy restores traffic and removes the group chain", async () => {
    const { a, b, c } = pods as Record<"a" | "b" | "c", Pod>;
    await new ResourceClient(store).delete(NP as NonNullable<typeof NP>, "b-from-a", "default");
    await waitFor("the group chain gone", () => groupChain() === undefined, 30_000, 100);
    expect(connects(c.ns, b, true)).toBe(true);
    expect(pings(a.ns, b, true)).toBe(true);
  });
});
