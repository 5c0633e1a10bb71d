import { describe, expect, it } from "vitest";
import { seq, simpleAdapter } from "../../src/bgp/rib/simple_attrs.js";
import {
  announce,
  applyBatches,
  LOCAL_AS,
  makeRib,
  type PeerTables,
  peer,
  tableOf,
  withdraw,
} from "./fixtures.js";

describe("attribute interning under churn", () => {
  it("sweeps unreferenced sets, reuses ids, and keeps every table and cache exact", () => {
    const rib = makeRib({ clusterId: "10.255.0.1" });
    const e1 = peer(rib, { address: "192.0.2.1", asn: 65001, nextHopSelfV4: "192.0.2.100" });
    const e2 = peer(rib, { address: "192.0.2.2", asn: 65002, nextHopSelfV4: "192.0.2.100" });
    const c1 = peer(rib, {
      address: "10.0.0.1",
      asn: LOCAL_AS,
      routeReflectorClient: true,
      nextHopSelfV4: "10.0.0.100",
    });
    const handles = [e1, e2, c1];
    const ids = ["192.0.2.1", "192.0.2.2", "10.0.0.1"];
    const tables: PeerTables = new Map(ids.map((i) => [i, new Map()]));
    const model = new Map<string, number>(); // "peer|prefix" -> med
    let x = 12345;
    const rnd = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x >>> 8;
    };
    const startSize = rib.attrs.size;
    let maxSize = 0;
    for (let round = 0; round < 40; round++) {
      for (let k = 0; k < 150; k++) {
        const h = rnd() % 3;
        const prefix = `10.${1 + (rnd() % 3)}.${rnd() % 40}.0/24`;
        const key = `${h}|${prefix}`;
        if (rnd() % 4 === 0) {
          withdraw(rib, handles[h] as number, prefix);
          model.delete(key);
        } else {
          // A new MED almost every time: thousands of distinct attribute sets over the run.
          const med = round * 1000 + (rnd() % 1000);
          const asPath = h === 2 ? seq(65009) : seq(h === 0 ? 65001 : 65002, 65009);
          announce(rib, handles[h] as number, prefix, { nextHop: `192.0.2.${h + 1}`, asPath, med });
          model.set(key, med);
        }
      }
      applyBatches(tables, rib.drain().adjOut);
      maxSize = Math.max(maxSize, rib.attrs.size);
      for (const id of ids) expect(tables.get(id)).toEqual(tableOf(rib, id));
    }
    // Sweeps happened (the table did not keep every set ever seen) and nothing live was lost.
    expect(rib.attrs.epoch).toBeGreaterThan(0);
    expect(maxSize).toBeLessThan(40 * 150);
    for (const [key, med] of model) {
      const [h, prefix] = key.split("|") as [string, string];
      const e = rib.explain(prefix);
      const path = e?.paths.find((p) => p.peer === ids[Number(h)]);
      expect(path?.attrs.med).toBe(med);
    }
    // What peers hold matches a recomputation from scratch of what they should get.
    for (const id of ids) {
      for (const [prefix, attrsKey] of tableOf(rib, id)) {
        const ex = rib.explainExport(prefix, id);
        expect(ex.advertised).toBe(true);
        expect(simpleAdapter.key(ex.attrs as never)).toBe(attrsKey);
      }
    }
    expect(startSize).toBeLessThan(maxSize);
  });
});
