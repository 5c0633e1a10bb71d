// An operator's view of a node that runs no BGP speaker (`--networking-backend vxlan`), on the
// embedded store: the real `ocelot node run` in a namespace, its /metrics scraped and parsed by
// parse-prometheus-text-format. The pool's vxlanMode Always makes the daemon assign its VXLAN
// tunnel address by IPAM (counted: one assign, one block claimed, conflicts by record at 0); a
// second Node and its block, written as another node would, take the overlay's fast path, and
// the watch-event-to-applied histogram counts it (path overlay_fast) and the passes (path pass).
// The Grafana dashboard's panels for these series name metrics this scrape has. The status
// socket is served without the speaker: `ocelot log-level` shows and changes the levels (the
// daemon then logs at debug), and `ocelot status` says why there is no speaker.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamKeys } from "../../src/ipam/records.js";
import { tunnelMac } from "../../src/node/tunnel_addrs.js";
import { runSync } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { BIN, daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";

const skip = skipWithReason("node daemon metrics without BGP", daemonTestsUnavailable());

const METRICS_PORT = 9094;
const NODE_IP = "10.71.0.1";
const POOL = "10.233.0.0/16";
const OTHER = { name: "opsm-other", fabric: "10.71.0.2", tunnel: "10.233.200.1" };
const OTHER_BLOCK = "10.233.200.0/26";

describe.skipIf(skip)("ocelot node run --networking-backend vxlan: metrics and log-level", () => {
  let dir: string;
  let store: SqliteDatastore;
  let ns: Netns;
  let daemon: NodeProcess;

  const ocelot = (...args: string[]) =>
    runSync("ip", ["netns", "exec", ns.name, join(BIN, "ocelot"), ...args]);
  const scrape = () => {
    const [code, text] = httpGetIn(ns, METRICS_PORT, "/metrics");
    expect(code).toBe(200);
    return text;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-opsmetrics-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "opsm", POOL, { blockSize: 26, vxlanMode: "Always" });
    ns = Netns.create("opsm");
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p");
    ns.ip("link", "set", "eth0p", "up");
    ns.ip("addr", "add", `${NODE_IP}/24`, "dev", "eth0");
    ns.ip("link", "set", "eth0", "up");
    daemon = await startNode(ns, [
      ...["--nodename", "opsm-node", "--ip", `${NODE_IP}/24`],
      ...["--datastore", `file:${join(dir, "store.db")}`],
      ...["--networking-backend", "vxlan", "--metrics-address", `127.0.0.1:${METRICS_PORT}`],
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("counts the tunnel address's IPAM and the watch-event-to-applied lag of both paths; the dashboard's panels name scraped metrics", async () => {
    await waitFor(
      "the VXLAN tunnel address assigned",
      () => metricSample(scrape(), 'ocelot_ipam_operations_total{op="assign",result="ok"}') === 1,
      20_000,
      200,
    );
    await waitFor(
      "the node's VXLAN device",
      () => ns.ipJson<unknown[]>("link", "show", "type", "vxlan").length > 0,
    );
    // Another node and its block, as that node's daemon and IPAM would write them.
    const mac = tunnelMac(OTHER.name, 4);
    await store.update(
      `/ocelot/resources/v3/nodes/${OTHER.name}`,
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name: OTHER.name },
        spec: {
          bgp: { ipv4Address: `${OTHER.fabric}/24` },
          ipv4VXLANTunnelAddr: OTHER.tunnel,
          vxlanTunnelMACAddr: mac,
        },
      }),
    );
    await putAffinity(store, OTHER.name, OTHER_BLOCK);
    await waitFor("the other node's block routed over VXLAN", () =>
      ns
        .ipJson<{ dst: string; gateway?: string }[]>("route", "show", "proto", "202")
        .some((r) => r.dst === OTHER_BLOCK && r.gateway === OTHER.tunnel),
    );
    const fastCount = 'ocelot_datastore_watch_to_applied_seconds_count{path="overlay_fast"}';
    await waitFor(
      "a fast-path observation",
      () => (metricSample(scrape(), fastCount) ?? 0) >= 1,
      20_000,
      200,
    );
    const text = scrape();
    const families = parsePrometheusTextFormat(text);
    const byName = new Map(families.map((f) => [f.name, f]));
    expect(byName.get("ocelot_datastore_watch_to_applied_seconds")?.type).toBe("HISTOGRAM");
    expect(byName.get("ocelot_ipam_operations_total")?.type).toBe("COUNTER");
    expect(byName.get("ocelot_ipam_block_claims_total")?.type).toBe("COUNTER");
    expect(byName.get("ocelot_ipam_cas_conflicts_total")?.type).toBe("COUNTER");
    // One tunnel address, from the one block IPAM claimed for this node; no release; one writer.
    expect(metricSample(text, 'ocelot_ipam_operations_total{op="assign",result="ok"}')).toBe(1);
    expect(metricSample(text, 'ocelot_ipam_operations_total{op="release",result="ok"}')).toBe(0);
    expect(metricSample(text, "ocelot_ipam_block_claims_total")).toBe(1);
    for (const record of ["block", "affinity", "handle", "other"])
      expect(
        metricSample(text, `ocelot_ipam_cas_conflicts_total{record="${record}"}`),
        record,
      ).toBe(0);
    // The block claimed is in the store under this node's name.
    const affinities = await store.list(new IpamKeys().affinityPrefix("opsm-node", 4));
    expect(affinities.items).toHaveLength(1);
    // Both paths observed; a lag is a duration: below the hang limit, not negative.
    expect(metricSample(text, fastCount)).toBeGreaterThanOrEqual(1);
    const passCount = metricSample(
      text,
      'ocelot_datastore_watch_to_applied_seconds_count{path="pass"}',
    );
    expect(passCount).toBeGreaterThanOrEqual(1);
    const fastSum = metricSample(
      text,
      'ocelot_datastore_watch_to_applied_seconds_sum{path="overlay_fast"}',
    ) as number;
    expect(fastSum).toBeGreaterThan(0);
    expect(fastSum).toBeLessThan(60);
    // No speaker: no BGP series with samples, and no BMP series.
    expect(text).not.toMatch(/^ocelot_bgp_peer_state\{/m);
    expect(text).not.toMatch(/^ocelot_bmp_/m);

    // The dashboard's panels for these series name metrics this scrape has.
    const dashboard = JSON.parse(
      readFileSync(new URL("../../config/grafana-dashboard.json", import.meta.url), "utf8"),
    ) as { panels: { title: string; targets: { expr: string }[] }[] };
    const series = new Set(
      text
        .split("\n")
        .filter((l) => l !== "" && !l.startsWith("#"))
        .map((l) => l.split(/[{ ]/)[0]),
    );
    const named = dashboard.panels
      .flatMap((p) => p.targets.map((t) => t.expr))
      .flatMap((e) => e.match(/\b(?:ocelot_ipam|ocelot_datastore)_[a-zA-Z0-9_]+/g) ?? []);
    expect(new Set(named)).toEqual(
      new Set([
        "ocelot_datastore_watch_to_applied_seconds_bucket",
        "ocelot_datastore_watch_resyncs_total",
        "ocelot_ipam_operations_total",
        "ocelot_ipam_block_claims_total",
        "ocelot_ipam_cas_conflicts_total",
      ]),
    );
    expect(named.filter((m) => !series.has(m))).toEqual([]);
  });

  it("ocelot log-level answers without the speaker and changes the level at run time; ocelot status says why there is no speaker", async () => {
    const show = ocelot("log-level");
    expect(show.status, show.stderr).toBe(0);
    expect(show.stdout.trim().split("\n").sort()).toEqual(["bgp=info", "node=info"]);
    expect(daemon.lines.some((l) => l.level === 20)).toBe(false);
    const set = ocelot("log-level", "node=debug");
    expect(set.status, set.stderr).toBe(0);
    expect(set.stdout).toContain("node=debug");
    // A debug line appears (the periodic datastore probe's pass or the next change).
    await store.update(
      `/ocelot/resources/v3/nodes/${OTHER.name}-2`,
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name: `${OTHER.name}-2` },
        spec: { bgp: { ipv4Address: "10.71.0.3/24" } },
      }),
    );
    await waitFor("a debug line", () => daemon.lines.some((l) => l.level === 20), 20_000, 100);
    const back = ocelot("log-level", "all=info");
    expect(back.status, back.stderr).toBe(0);
    expect(back.stdout.trim().split("\n").sort()).toEqual(["bgp=info", "node=info"]);
    const bad = ocelot("log-level", "node=loud");
    expect(bad.status).toBe(2);
    const status = ocelot("status", "--json");
    expect(status.status).not.toBe(0);
    expect(status.stderr).toContain("the BGP speaker does not run on this node");
  });
});
