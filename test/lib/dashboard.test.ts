// The Grafana dashboard (config/grafana-dashboard.json) against the metric families the daemons'
// pure registries export (src/lib/daemon_metrics.ts, src/bgp/metrics.ts): every family is named
// by a panel's query or listed below as not shown, with the reason. A family added without a
// panel fails here; that its queries match a live scrape is test/node/node_status.netns.test.ts.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as bgpMetrics from "../../src/bgp/metrics.js";
import * as daemonMetrics from "../../src/lib/daemon_metrics.js";
import { MetricsRegistry } from "../../src/lib/metrics.js";

/** Exported families the dashboard deliberately does not graph, and why. */
const NOT_SHOWN: Record<string, string> = {};

interface Dashboard {
  panels: { id: number; title: string; targets: { expr: string }[] }[];
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../config/grafana-dashboard.json", import.meta.url), "utf8"),
) as Dashboard;

/** Every family of both files, from their add* functions given empty inputs. */
function exportedFamilies(): string[] {
  const reg = new MetricsRegistry();
  daemonMetrics.addFibMetrics(reg, []);
  daemonMetrics.addAgentMetrics(reg, daemonMetrics.zeroAgentCounters());
  daemonMetrics.addIpamMetrics(reg, { operations: {}, blockClaims: 0, casConflicts: {} });
  daemonMetrics.addProcessMetrics(reg, { rssBytes: 0, startedAtMs: 0 });
  bgpMetrics.addBgpMetrics(reg, undefined);
  bgpMetrics.addBfdMetrics(reg, [], { received: 0, sent: 0, discarded: {} });
  return reg.families.map((f) => f.name);
}

describe("config/grafana-dashboard.json", () => {
  it("calls every add* of both files (a new one must be added above)", () => {
    const adders = [...Object.keys(daemonMetrics), ...Object.keys(bgpMetrics)]
      .filter((k) => /^add[A-Z]/.test(k))
      .sort();
    expect(adders).toEqual([
      "addAgentMetrics",
      "addBfdMetrics",
      "addBgpMetrics",
      "addFibMetrics",
      "addIpamMetrics",
      "addProcessMetrics",
    ]);
  });

  it("graphs every family of daemon_metrics.ts and bgp/metrics.ts, or lists it as not shown", () => {
    const families = exportedFamilies();
    expect(families.length).toBeGreaterThan(35);
    const named = new Set(
      dashboard.panels
        .flatMap((p) => p.targets.map((t) => t.expr))
        .flatMap((e) => e.match(/\b(?:ocelot|process|nodejs)_[a-zA-Z0-9_]+/g) ?? []),
    );
    const missing = families.filter((f) => !named.has(f) && !(f in NOT_SHOWN));
    expect(missing).toEqual([]);
    // Not-shown entries are exported and really not shown (no stale list).
    for (const f of Object.keys(NOT_SHOWN)) {
      expect(families).toContain(f);
      expect(named.has(f)).toBe(false);
    }
    // Among them the FIB's drift counters.
    expect(named).toContain("ocelot_fib_routes_restored_total");
    expect(named).toContain("ocelot_fib_routes_swept_total");
  });

  it("has unique panel ids and no two panels on the same grid cell", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = (dashboard.panels as unknown as { gridPos: { x: number; y: number } }[]).map(
      (p) => `${p.gridPos.x},${p.gridPos.y}`,
    );
    expect(new Set(cells).size).toBe(cells.length);
  });
});
