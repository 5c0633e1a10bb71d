// previewStaged(): what promoting a staged policy would change, read from the renderer's own
// endpoint chains.
import { describe, expect, it } from "vitest";
import type { Policy, PolicyEndpoint, PolicyInput } from "../../src/felix/policy.js";
import { formatSteps, previewStaged } from "../../src/felix/staged.js";

const ep = (ns: string, name: string, labels: Record<string, string>): PolicyEndpoint => ({
  id: `${ns}/${name}`,
  namespace: ns,
  labels,
  addresses: ["10.0.0.1"],
});
const endpoints = [
  ep("prod", "web", { app: "web" }),
  ep("prod", "db", { app: "db" }),
  ep("dev", "web", { app: "web" }),
];
const pol = (id: string, selector: string, extra: Partial<Policy> = {}): Policy => ({
  id,
  selector,
  types: ["Ingress"],
  ingress: [{ action: "Allow" }] as Policy["ingress"],
  egress: [],
  ...extra,
});
const input = (policies: Policy[]): PolicyInput => ({ endpoints, policies });

describe("previewStaged()", () => {
  it("a new staged policy: the endpoints it selects become policed, in their namespace only", () => {
    const staged = pol("prod/allow-web", "app == 'web'", { namespace: "prod", order: 10 });
    const p = previewStaged(input([]), {
      kind: "StagedNetworkPolicy",
      name: "prod/allow-web",
      action: "Set",
      policy: staged,
    });
    expect(p.selects).toEqual(["prod/web"]);
    expect(p.changes).toEqual([
      {
        endpoint: "prod/web",
        direction: "Ingress",
        after: [{ policy: "prod/allow-web" }, { tierEnd: "Deny" }],
      },
    ]);
    expect(formatSteps(p.changes[0]?.before)).toBe("(not policed: allowed)");
    expect(formatSteps(p.changes[0]?.after)).toBe("prod/allow-web, <end of tier: Deny>");
  });

  it("Set replaces the enforced twin in its place by order; unchanged endpoints are not listed", () => {
    const global = pol("all-web", "app == 'web'", { order: 100 });
    const twin = pol("prod/allow-web", "app == 'web'", { namespace: "prod", order: 10 });
    const staged = { ...twin, order: 200 };
    const p = previewStaged(input([global, twin]), {
      kind: "StagedNetworkPolicy",
      name: "prod/allow-web",
      action: "Set",
      policy: staged,
    });
    expect(p.selects).toEqual(["prod/web"]);
    expect(p.changes).toEqual([
      {
        endpoint: "prod/web",
        direction: "Ingress",
        before: [{ policy: "prod/allow-web" }, { policy: "all-web" }, { tierEnd: "Deny" }],
        after: [{ policy: "all-web" }, { policy: "prod/allow-web" }, { tierEnd: "Deny" }],
      },
    ]);
  });

  it("Delete removes the twin: an endpoint only it selected is no longer policed", () => {
    const twin = pol("db-only", "app == 'db'", { types: ["Ingress", "Egress"] });
    const p = previewStaged(input([twin]), {
      kind: "StagedGlobalNetworkPolicy",
      name: "db-only",
      action: "Delete",
      policy: pol("db-only", "all()"),
    });
    expect(p.selects).toEqual(["prod/db"]);
    expect(p.changes.map((c) => [c.endpoint, c.direction, c.after])).toEqual([
      ["prod/db", "Ingress", undefined],
      ["prod/db", "Egress", undefined],
    ]);
  });

  it("a staged policy identical to its twin changes nothing", () => {
    const twin = pol("web", "app == 'web'");
    const p = previewStaged(input([twin]), {
      kind: "StagedGlobalNetworkPolicy",
      name: "web",
      action: "Set",
      policy: { ...twin },
    });
    expect(p.selects).toEqual(["prod/web", "dev/web"]);
    expect(p.changes).toEqual([]);
  });
});

describe("previewStaged() with profiles", () => {
  it("profiles with rules follow the policies; a staged policy is shown before them", () => {
    const withProfile: PolicyInput = {
      endpoints: endpoints.map((e) => ({ ...e, profiles: ["kns.prod"] })),
      policies: [],
      profiles: [
        { name: "kns.prod", ingress: [{ action: "Allow" }] as Policy["ingress"], egress: [] },
      ],
    };
    const p = previewStaged(withProfile, {
      kind: "StagedGlobalNetworkPolicy",
      name: "deny-db",
      action: "Set",
      policy: pol("deny-db", "app == 'db'", { ingress: [{ action: "Deny" }] as Policy["ingress"] }),
    });
    const db = p.changes.find((c) => c.endpoint === "prod/db" && c.direction === "Ingress");
    expect(formatSteps(db?.before)).toBe("profile kns.prod, <drop>");
    expect(formatSteps(db?.after)).toBe("deny-db, <end of tier: Deny>, profile kns.prod, <drop>");
  });
});
