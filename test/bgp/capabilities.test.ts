// Capability negotiation of ADD-PATH (RFC 7911 §4, per family) and extended messages (RFC 8654)
// from peer settings: what we advertise and what both sides' OPENs give the codec.
import { describe, expect, it } from "vitest";
import { impact, parseConfig } from "../../src/bgp/config.js";
import { localCapabilities, negotiateOptions } from "../../src/bgp/fsm/capabilities.js";
import type { PeerSettings } from "../../src/bgp/fsm/types.js";
import { AddPathMode, Afi, Safi } from "../../src/bgp/wire/constants.js";
import { type Capability, Ipv4Unicast, Ipv6Unicast } from "../../src/bgp/wire/types.js";

const base: PeerSettings = {
  localAs: 64512,
  peerAs: 64512,
  routerId: 1,
  holdTime: 90,
  connectRetryTime: 5,
  passive: false,
  families: ["ipv4-unicast", "ipv6-unicast"],
  requiredFamilies: [],
  idleHoldMs: 1000,
  maxIdleHoldMs: 60_000,
};

const addPath = (entries: [number, number][]): Capability => ({
  kind: "AddPath",
  families: entries.map(([afi, mode]) => ({ afi, safi: Safi.Unicast, mode })),
});

describe("ADD-PATH capability", () => {
  it("is not advertised unless configured, then once per family with the configured mode", () => {
    expect(localCapabilities(base).some((c) => c.kind === "AddPath")).toBe(false);
    const both = localCapabilities({ ...base, addPath: { receive: true, send: true } });
    expect(both.filter((c) => c.kind === "AddPath")).toEqual([
      addPath([
        [Afi.Ipv4, AddPathMode.Both],
        [Afi.Ipv6, AddPathMode.Both],
      ]),
    ]);
    const rx = localCapabilities({
      ...base,
      families: ["ipv4-unicast"],
      addPath: { receive: true, send: false },
    });
    expect(rx.filter((c) => c.kind === "AddPath")).toEqual([
      addPath([[Afi.Ipv4, AddPathMode.Receive]]),
    ]);
  });

  it("per family: only the session's families listed in addPath.families", () => {
    const v6 = localCapabilities({
      ...base,
      addPath: { receive: true, send: true, families: ["ipv6-unicast"] },
    });
    expect(v6.filter((c) => c.kind === "AddPath")).toEqual([
      addPath([[Afi.Ipv6, AddPathMode.Both]]),
    ]);
    const o = negotiateOptions(v6, [
      addPath([
        [Afi.Ipv4, AddPathMode.Both],
        [Afi.Ipv6, AddPathMode.Both],
      ]),
    ]);
    expect([...o.addPath.send]).toEqual([Ipv6Unicast]);
    expect([...o.addPath.receive]).toEqual([Ipv6Unicast]);
    // None of the session's families listed: no capability at all.
    const none = localCapabilities({
      ...base,
      families: ["ipv4-unicast"],
      addPath: { receive: true, send: true, families: ["ipv6-unicast"] },
    });
    expect(none.some((c) => c.kind === "AddPath")).toBe(false);
  });

  it("negotiates each family on its own: we send where the peer receives, and the mirror", () => {
    const mine = localCapabilities({ ...base, addPath: { receive: true, send: true } });
    const o = negotiateOptions(mine, [
      addPath([
        [Afi.Ipv4, AddPathMode.Receive],
        [Afi.Ipv6, AddPathMode.Send],
      ]),
    ]);
    expect([...o.addPath.send]).toEqual([Ipv4Unicast]);
    expect([...o.addPath.receive]).toEqual([Ipv6Unicast]);
    // A peer without the capability: neither.
    const none = negotiateOptions(mine, []);
    expect(none.addPath.send.size + none.addPath.receive.size).toBe(0);
    // We only receive: a peer that only receives gives nothing.
    const rxOnly = localCapabilities({ ...base, addPath: { receive: true, send: false } });
    const o2 = negotiateOptions(rxOnly, [addPath([[Afi.Ipv4, AddPathMode.Receive]])]);
    expect(o2.addPath.send.size + o2.addPath.receive.size).toBe(0);
  });
});

describe("extended messages capability", () => {
  it("is advertised by default and used only when both sides have it", () => {
    const mine = localCapabilities(base);
    expect(mine.some((c) => c.kind === "ExtendedMessage")).toBe(true);
    expect(negotiateOptions(mine, [{ kind: "ExtendedMessage" }]).extendedMessage).toBe(true);
    expect(negotiateOptions(mine, []).extendedMessage).toBe(false);
    const off = localCapabilities({ ...base, extendedMessage: false });
    expect(off.some((c) => c.kind === "ExtendedMessage")).toBe(false);
    expect(negotiateOptions(off, [{ kind: "ExtendedMessage" }]).extendedMessage).toBe(false);
  });
});

describe("bgpd config of both", () => {
  const doc = (peer: object) => ({
    asn: 64512,
    routerId: "10.0.0.1",
    peers: [{ address: "10.0.0.2", asn: 64512, ...peer }],
  });

  it("takes addPath (receive defaults to true, send to 0) and extendedMessage", () => {
    const p = parseConfig(doc({ addPath: { send: 4 }, extendedMessage: false })).peers[0];
    expect(p?.addPath).toEqual({ receive: true, send: 4 });
    expect(p?.extendedMessage).toBe(false);
    expect(parseConfig(doc({})).peers[0]?.addPath).toBeUndefined();
  });

  it("names a bad field", () => {
    expect(() => parseConfig(doc({ addPath: { send: 300 } }))).toThrow(
      /peers\[0\]\.addPath\.send: Too big: expected number to be <=255/,
    );
    expect(() => parseConfig(doc({ addPath: { sendMax: 2 } }))).toThrow(
      /peers\[0\]\.addPath: unknown field "sendMax"/,
    );
  });

  it("a change of either resets the session (capabilities are in the OPEN)", () => {
    const a = parseConfig(doc({}));
    const b = parseConfig(doc({ addPath: { send: 2 } }));
    const c = parseConfig(doc({ extendedMessage: false }));
    expect(impact(a, b).changed[0]).toEqual({
      address: "10.0.0.2",
      impact: "reset",
      field: "addPath",
    });
    expect(impact(a, c).changed[0]).toMatchObject({ impact: "reset", field: "extendedMessage" });
  });
});

describe("extended next hop capability (RFC 8950)", () => {
  const enh: Capability = {
    kind: "ExtendedNextHop",
    entries: [{ nlriAfi: Afi.Ipv4, nlriSafi: Safi.Unicast, nextHopAfi: Afi.Ipv6 }],
  };

  it("is advertised when configured for a peer with IPv4 unicast, used when both have it", () => {
    expect(localCapabilities(base).some((c) => c.kind === "ExtendedNextHop")).toBe(false);
    const mine = localCapabilities({ ...base, extendedNextHop: true });
    expect(mine.filter((c) => c.kind === "ExtendedNextHop")).toEqual([enh]);
    expect(negotiateOptions(mine, [enh]).extendedNextHop).toBe(true);
    expect(negotiateOptions(mine, []).extendedNextHop).toBe(false);
    const v6only = localCapabilities({
      ...base,
      families: ["ipv6-unicast"],
      extendedNextHop: true,
    });
    expect(v6only.some((c) => c.kind === "ExtendedNextHop")).toBe(false);
  });
});

describe("unnumbered peers (by interface)", () => {
  const doc = (peer: object) => ({
    asn: 64512,
    routerId: "10.0.0.1",
    peers: [{ asn: 65000, ...peer }],
  });

  it("takes an interface instead of an address, and refuses both or neither", () => {
    expect(parseConfig(doc({ interface: "eth0" })).peers[0]?.interface).toBe("eth0");
    expect(() => parseConfig(doc({}))).toThrow(
      /peers\[0\]: give the peer's address or its interface/,
    );
    expect(() => parseConfig(doc({ interface: "eth0", address: "10.0.0.2" }))).toThrow(
      /give the peer's address or its interface/,
    );
    expect(() => parseConfig(doc({ interface: "eth 0" }))).toThrow(/peers\[0\]\.interface/);
  });
});
