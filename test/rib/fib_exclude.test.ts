// Rib.setFibExclude: routes inside the excluded CIDRs (Calico's rejectcidrs, the Service IP
// ranges) stay in the Loc-RIB and in the Adj-RIB-Out but never reach the FIB; a change of the
// list installs or removes what it covers.
import { describe, expect, it } from "vitest";
import { announce, makeRib, peer, tableOf } from "./fixtures.js";

const fibSet = (ch: ReturnType<ReturnType<typeof makeRib>["drain"]>) =>
  ch.fib
    .routes()
    .set.map((r) => r.dst)
    .sort();
const fibRemoved = (ch: ReturnType<ReturnType<typeof makeRib>["drain"]>) =>
  ch.fib
    .routes()
    .remove.map((r) => r.dst)
    .sort();

describe("Rib FIB exclusion (Calico's kernel filter of the Service IP ranges)", () => {
  it("keeps routes inside the ranges out of the FIB, still advertises them, and follows changes", () => {
    const rib = makeRib();
    rib.setFibExclude(["10.96.0.0/16", "203.0.113.7/24", "fd00:96::/64"]);
    const a = peer(rib, { address: "10.0.0.1", asn: 64512 });
    peer(rib, { address: "10.0.0.9", asn: 65030 });
    for (const p of [
      "10.96.0.0/16",
      "10.96.0.10/32",
      "203.0.113.10/32",
      "10.97.0.0/16",
      "10.95.255.255/32",
    ])
      announce(rib, a, p, { nextHop: "10.0.0.1" });
    announce(rib, a, "fd00:96::10/128", { nextHop: "fd00::1" });
    announce(rib, a, "fd00:97::10/128", { nextHop: "fd00::1" });
    const ch = rib.drain();
    // Only what lies outside every range is installed (a shorter prefix covering a range too).
    expect(fibSet(ch)).toEqual(["10.95.255.255/32", "10.97.0.0/16", "fd00:97::10/128"]);
    // The Loc-RIB holds all, and the eBGP peer is sent all (the filter is the kernel's only).
    expect([...rib.locRib()].length).toBe(7);
    expect(tableOf(rib, "10.0.0.9").size).toBe(7);
    // The cluster range dropped from the list: its routes go to the FIB; the new range's leave it.
    rib.setFibExclude(["203.0.113.0/24", "fd00:96::/64", "10.97.0.0/16"]);
    const ch2 = rib.drain();
    expect(fibSet(ch2)).toEqual(["10.96.0.0/16", "10.96.0.10/32"]);
    expect(fibRemoved(ch2)).toEqual(["10.97.0.0/16"]);
    // The same list again: nothing to do.
    rib.setFibExclude(["203.0.113.0/24", "fd00:96::/64", "10.97.0.0/16"]);
    expect(rib.pending).toBe(0);
  });
});
