// Import ownership (src/bgp/policy/ownership.ts), as a pure decision: inside the pools only the
// peer's own prefixes (equal) and host routes inside them pass, ahead of every filter rule; the
// rest of the peer's policy decides about what passes and about everything outside the pools;
// IPv6 the same at /128; path-reading policies keep their edits; the bgpd config refuses lists
// that are not prefixes, naming the field.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { acceptAll, filterPolicy } from "../../src/bgp/policy/filter.js";
import { ownershipDelta, withOwnership } from "../../src/bgp/policy/ownership.js";
import { type PrefixPolicy, RouteSource } from "../../src/bgp/rib/policy.js";
import { formatV4, formatV6, parsePrefix } from "../../src/bgp/rib/prefix.js";
import { verdict } from "../rib/fixtures.js";

const run = (policy: PrefixPolicy, prefix: string, src: RouteSource = RouteSource.Internal) =>
  verdict(policy, prefix, src);

const POOLS = ["10.244.0.0/16", "fd00:10:244::/48"];

describe("import ownership", () => {
  const own = withOwnership(
    {
      within: POOLS,
      accept: ["10.244.1.0/26", "10.244.9.3/32", "fd00:10:244:0:1::/122", "fd00:10:244::99/128"],
    },
    filterPolicy([], "import"),
  );

  it("passes the peer's blocks and host routes inside them or given to it", () => {
    expect(run(own, "10.244.1.0/26")).toBe("accept");
    expect(run(own, "10.244.1.7/32")).toBe("accept");
    expect(run(own, "10.244.9.3/32")).toBe("accept");
    expect(run(own, "fd00:10:244:0:1::/122")).toBe("accept");
    expect(run(own, "fd00:10:244:0:1::3f/128")).toBe("accept");
    expect(run(own, "fd00:10:244::99/128")).toBe("accept");
  });

  it("refuses the rest inside the pools, whatever its length", () => {
    for (const p of [
      "10.244.2.0/26", // another node's block
      "10.244.9.4/32", // an address nobody gave it
      "10.244.1.0/27", // part of its block, not a host route
      "10.244.0.0/25", // a supernet of its block
      "10.244.0.0/16", // the pool
      "fd00:10:244:0:2::/122",
      "fd00:10:244:0:2::1/128",
    ])
      expect(run(own, p), p).toBe("NotOwned");
    const p = parsePrefix("10.244.2.0/26");
    expect(own.describe?.(4, p.words, 0, p.len, RouteSource.Internal)).toMatch(
      /10\.244\.2\.0\/26 inside 10\.244\.0\.0\/16 is not the peer's/,
    );
  });

  it("leaves what is outside the pools to the peer's own policy", () => {
    expect(run(own, "10.96.0.0/24")).toBe("accept");
    expect(run(own, "10.0.0.0/8")).toBe("accept");
    expect(run(own, "0.0.0.0/0")).toBe("accept");
    const strict = withOwnership(
      { within: POOLS, accept: ["10.244.1.0/26"] },
      filterPolicy(
        [
          {
            name: "f",
            spec: { importV4: [{ action: "Reject", cidr: "10.96.0.0/12", matchOperator: "In" }] },
          },
        ],
        "import",
      ),
    );
    expect(run(strict, "10.96.0.0/24")).toBe("FilterReject");
  });

  it("comes before every rule: an Accept cannot let an unowned prefix in, a Reject still refuses an owned one", () => {
    const f = (rules: object[]) =>
      withOwnership(
        { within: POOLS, accept: ["10.244.1.0/26"] },
        filterPolicy([{ name: "f", spec: { importV4: rules as never } }], "import"),
      );
    expect(run(f([{ action: "Accept" }]), "10.244.2.0/26")).toBe("NotOwned");
    expect(
      run(
        f([{ action: "Reject", cidr: "10.244.1.0/26", matchOperator: "Equal" }]),
        "10.244.1.0/26",
      ),
    ).toBe("FilterReject");
  });

  it("with no block at all, refuses everything inside the pools", () => {
    const none = withOwnership(
      { within: POOLS, accept: [] },
      filterPolicy([], "import", acceptAll),
    );
    expect(run(none, "10.244.1.0/26")).toBe("NotOwned");
    expect(run(none, "10.244.1.1/32")).toBe("NotOwned");
    expect(run(none, "192.0.2.0/24")).toBe("accept");
  });

  it("keeps a path-reading policy's path() and edits, the ownership first", () => {
    const inner = filterPolicy(
      [
        {
          name: "f",
          spec: {
            importV4: [{ action: "Accept", operations: [{ setPriority: { value: 512 } }] }],
          },
        },
      ],
      "import",
    );
    expect(inner.path).toBeDefined();
    const pol = withOwnership({ within: POOLS, accept: ["10.244.1.0/26"] }, inner);
    const attrs = { localPref: undefined, asPath: [], communities: [] } as never;
    const at = (prefix: string) => {
      const p = parsePrefix(prefix);
      return pol.path?.(4, p.words, 0, p.len, RouteSource.Internal, attrs);
    };
    expect(at("10.244.2.0/26")).toBe(14);
    const id = at("10.244.1.0/26") as number;
    expect(id).toBeLessThan(0);
    expect(pol.edit?.(-id)).toMatchObject({ localPref: 2147483647 - 512 });
  });

  it("is refused by the bgpd config unless both lists hold prefixes, naming the field", () => {
    const cfg = (importOwnership: unknown) => () =>
      parseConfig({
        asn: 64512,
        routerId: "10.0.0.1",
        peers: [{ address: "10.0.0.2", asn: 64512, importOwnership }],
      });
    expect(cfg({ within: ["10.244.0.0/16"], accept: ["10.244.1.0/26"] })).not.toThrow();
    expect(cfg({ within: ["10.244.0.1/16"], accept: [] })).toThrow(
      /peers\[0\]\.importOwnership\.within\[0\]: not a prefix.*host bits/,
    );
    expect(cfg({ within: ["10.244.0.0/16"], accept: ["nope"] })).toThrow(
      /peers\[0\]\.importOwnership\.accept\[0\]: not a prefix/,
    );
    expect(cfg({ within: ["10.244.0.0/16"] })).toThrow(/peers\[0\]\.importOwnership\.accept/);
  });

  it("names the prefixes a change can decide differently: entries gained or lost and the host routes inside", () => {
    const text = (l: ReturnType<typeof ownershipDelta>) =>
      (l ?? []).map((p) =>
        p.family === 4 ? formatV4(p.words[0] as number, p.len) : formatV6(p.words, 0, p.len),
      );
    const d = text(
      ownershipDelta(
        { within: POOLS, accept: ["10.244.1.0/26", "10.244.9.3/32"] },
        { within: POOLS, accept: ["10.244.1.0/26", "10.244.2.0/30", "fd00:10:244::2:0/126"] },
      ),
    );
    expect(d).toEqual([
      "10.244.9.3/32",
      "10.244.2.0/30",
      "10.244.2.0/32",
      "10.244.2.1/32",
      "10.244.2.2/32",
      "10.244.2.3/32",
      "fd00:10:244::2:0/126",
      "fd00:10:244::2:0/128",
      "fd00:10:244::2:1/128",
      "fd00:10:244::2:2/128",
      "fd00:10:244::2:3/128",
    ]);
    // A /26 is 64 host routes and itself; nothing changed, nothing to do.
    expect(
      ownershipDelta({ within: POOLS, accept: [] }, { within: POOLS, accept: ["10.244.1.0/26"] }),
    ).toHaveLength(65);
    expect(
      ownershipDelta(
        { within: POOLS, accept: ["10.244.1.0/26"] },
        { within: POOLS, accept: ["10.244.1.0/26"] },
      ),
    ).toEqual([]);
    // The whole table: other pools, an ownership that comes or goes, a block of more than 4,096.
    expect(
      ownershipDelta({ within: POOLS, accept: [] }, { within: ["10.0.0.0/8"], accept: [] }),
    ).toBeUndefined();
    expect(ownershipDelta(undefined, { within: POOLS, accept: [] })).toBeUndefined();
    expect(ownershipDelta({ within: POOLS, accept: [] }, undefined)).toBeUndefined();
    expect(
      ownershipDelta({ within: POOLS, accept: [] }, { within: POOLS, accept: ["10.244.32.0/19"] }),
    ).toBeUndefined();
  });
});
