// The pure allocator decisions, without any datastore.
import { describe, expect, it } from "vitest";
import {
  type Pool,
  PoolSelectionError,
  pickAffineBlock,
  pickBlockToClaim,
  pickBorrowBlock,
  reservedIn,
  selectPools,
} from "../../src/ipam/allocator.js";
import { assignFromBlock, newBlock } from "../../src/ipam/block.js";
import { formatCidr, parseCidr } from "../../src/lib/ip.js";

const pool = (name: string, cidr: string, extra: Partial<Pool> = {}): Pool => ({
  name,
  cidr: parseCidr(cidr),
  blockSize: cidr.includes(":") ? 122 : 26,
  nodeSelector: "all()",
  disabled: false,
  allowedUses: ["Workload", "Tunnel"],
  ...extra,
});

describe("allocator", () => {
  const pools = [
    pool("a", "10.0.0.0/24"),
    pool("rack-b", "10.1.0.0/24", { nodeSelector: "rack == 'b'" }),
    pool("off", "10.2.0.0/24", { disabled: true }),
    pool("lb", "10.3.0.0/24", { allowedUses: ["LoadBalancer"] }),
    pool("v6", "fd00::/120"),
  ];
  const req = {
    family: 4 as const,
    requested: [] as string[],
    nodeLabels: { rack: "a" },
    use: "Workload" as const,
  };

  it("selectPools() keeps enabled pools matching the node and the use", () => {
    expect(selectPools(pools, req).map((p) => p.name)).toEqual(["a"]);
    expect(selectPools(pools, { ...req, nodeLabels: { rack: "b" } }).map((p) => p.name)).toEqual([
      "a",
      "rack-b",
    ]);
    expect(selectPools(pools, { ...req, use: "LoadBalancer" }).map((p) => p.name)).toEqual(["lb"]);
    expect(selectPools(pools, { ...req, family: 6 }).map((p) => p.name)).toEqual(["v6"]);
  });

  it("selectPools() takes requested pools by name or CIDR and refuses unknown or disabled ones", () => {
    expect(selectPools(pools, { ...req, requested: ["10.0.0.0/24"] }).map((p) => p.name)).toEqual([
      "a",
    ]);
    expect(() => selectPools(pools, { ...req, requested: ["nope"] })).toThrow(PoolSelectionError);
    expect(() => selectPools(pools, { ...req, requested: ["off"] })).toThrow(
      'Requested pool "off" is disabled',
    );
  });

  it("pickBlockToClaim() starts at a per-node offset and skips existing and fully reserved blocks", () => {
    const p = [pool("a", "10.0.0.0/24")];
    const first = pickBlockToClaim(p, new Set(), "node-1", []);
    expect(first?.pool.name).toBe("a");
    const taken = new Set([formatCidr(first?.cidr ?? parseCidr("0.0.0.0/0"))]);
    const second = pickBlockToClaim(p, taken, "node-1", [parseCidr("10.0.0.0/26")]);
    expect(second && formatCidr(second.cidr)).not.toBe(
      formatCidr(first?.cidr ?? parseCidr("0.0.0.0/0")),
    );
    expect(second && formatCidr(second.cidr)).not.toBe("10.0.0.0/26");
    const all = new Set(["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"]);
    expect(pickBlockToClaim(p, all, "node-1", [])).toBeUndefined();
  });

  it("pickAffineBlock() and pickBorrowBlock() only choose blocks with an unreserved free address", () => {
    const p = [pool("a", "10.0.0.0/30", { blockSize: 31 })];
    const mine = newBlock(parseCidr("10.0.0.0/31"), "host:n1", null);
    const other = assignFromBlock(newBlock(parseCidr("10.0.0.2/31"), "host:n2", null), 1, {
      handleId: "x",
      secondary: {},
    }).block;
    const reserved = [parseCidr("10.0.0.0/31"), parseCidr("10.0.0.3/32")];
    expect(pickAffineBlock([mine], p, reserved)).toBeUndefined();
    expect(pickAffineBlock([mine], p, [])).toBe(mine);
    expect(pickBorrowBlock([mine, other], "n1", p, [])).toBe(other);
    expect(pickBorrowBlock([mine, other], "n1", p, reserved)).toBeUndefined();
    expect(reservedIn(parseCidr("10.0.0.2/31"), reserved)(1)).toBe(true);
  });
});
