// PeerLinks (src/bgp/link/peer_links.ts), pure: which directly connected peers a link or address
// change holds down and releases, as rtnetlink would report the changes.
import { describe, expect, it } from "vitest";
import {
  IFF_DORMANT,
  IFF_LOWER_UP,
  IFF_RUNNING,
  IFF_UP,
  PeerLinks,
} from "../../src/bgp/link/peer_links.js";

/** A link up with its carrier and operstate UP (what a link that has been up a while shows). */
const UP = IFF_UP | IFF_LOWER_UP | IFF_RUNNING;
const v4 = (s: string) => Uint8Array.from(s.split(".").map(Number));

function table(): PeerLinks {
  const t = new PeerLinks();
  t.link({ ifindex: 2, name: "eth0", flags: UP });
  t.link({ ifindex: 3, name: "eth1", flags: UP });
  t.addr({ ifindex: 2, family: 4, prefixLen: 30, address: v4("10.0.0.1") }, true);
  t.addr({ ifindex: 3, family: 4, prefixLen: 24, address: v4("10.1.0.1") }, true);
  return t;
}

describe("PeerLinks", () => {
  it("holds a single-hop eBGP peer when its link goes down and releases it when it is back", () => {
    const t = table();
    t.configure({ peers: [{ address: "10.0.0.2" }, { address: "10.1.0.9" }] });
    expect(t.dumped()).toEqual([]);
    expect(t.link({ ifindex: 2, name: "eth0", flags: 0 })).toEqual([
      { peer: "10.0.0.2", held: true, reason: "link eth0 down" },
    ]);
    // The carrier lost (the far end down): up but not running is down too; no second hold.
    expect(t.link({ ifindex: 2, name: "eth0", flags: IFF_UP })).toEqual([]);
    expect(t.link({ ifindex: 2, name: "eth0", flags: UP })).toEqual([
      { peer: "10.0.0.2", held: false, reason: "link eth0 up" },
    ]);
    expect(t.link({ ifindex: 2, name: "eth0", flags: IFF_UP })).toEqual([
      { peer: "10.0.0.2", held: true, reason: "link eth0 has no carrier" },
    ]);
  });

  it("a link up with its carrier is up before the kernel's operstate says running (a fresh veth)", () => {
    // A veth pair just set up: the carrier (IFF_LOWER_UP) is there at once, IFF_RUNNING comes
    // with the kernel's deferred linkwatch work (seen 0.2-12 s later under load): not a hold.
    const fresh = IFF_UP | IFF_LOWER_UP;
    const t = new PeerLinks();
    t.link({ ifindex: 2, name: "eth0", flags: fresh });
    t.addr({ ifindex: 2, family: 4, prefixLen: 30, address: v4("10.0.0.1") }, true);
    t.configure({ peers: [{ address: "10.0.0.2" }] });
    expect(t.dumped()).toEqual([]);
    expect(t.held()).toEqual([]);
    expect(t.link({ ifindex: 2, name: "eth0", flags: UP })).toEqual([]);
    // The carrier lost, operstate not yet behind it (IFF_RUNNING still set): held at once.
    expect(t.link({ ifindex: 2, name: "eth0", flags: IFF_UP | IFF_RUNNING })).toEqual([
      { peer: "10.0.0.2", held: true, reason: "link eth0 has no carrier" },
    ]);
    expect(t.link({ ifindex: 2, name: "eth0", flags: fresh })).toEqual([
      { peer: "10.0.0.2", held: false, reason: "link eth0 up" },
    ]);
    // The driver holds the link dormant (IFF_DORMANT: e.g. 802.1X not done): no traffic yet.
    expect(t.link({ ifindex: 2, name: "eth0", flags: fresh | IFF_DORMANT })).toEqual([
      { peer: "10.0.0.2", held: true, reason: "link eth0 is dormant" },
    ]);
  });

  it("decides nothing before the first dump is complete", () => {
    const t = new PeerLinks();
    t.configure({ peers: [{ address: "10.0.0.2" }] });
    expect(t.link({ ifindex: 2, name: "eth0", flags: 0 })).toEqual([]);
    expect(t.addr({ ifindex: 2, family: 4, prefixLen: 30, address: v4("10.0.0.1") }, true)).toEqual(
      [],
    );
    expect(t.dumped()).toEqual([{ peer: "10.0.0.2", held: true, reason: "link eth0 down" }]);
  });

  it("holds a peer whose connected subnet is removed, and on link deletion", () => {
    const t = table();
    t.configure({ peers: [{ address: "10.1.0.9" }] });
    t.dumped();
    expect(
      t.addr({ ifindex: 3, family: 4, prefixLen: 24, address: v4("10.1.0.1") }, false),
    ).toEqual([
      {
        peer: "10.1.0.9",
        held: true,
        reason: "no connected subnet holds the peer (its address left eth1)",
      },
    ]);
    expect(t.addr({ ifindex: 3, family: 4, prefixLen: 24, address: v4("10.1.0.1") }, true)).toEqual(
      [{ peer: "10.1.0.9", held: false, reason: "link eth1 up" }],
    );
    expect(t.linkDeleted(3)).toEqual([{ peer: "10.1.0.9", held: true, reason: "link eth1 gone" }]);
  });

  it("never watches multihop peers, peers off every connected subnet, or with checkLink off", () => {
    const t = table();
    t.configure({
      peers: [
        { address: "10.0.0.2", multihop: 2 },
        { address: "10.1.0.9", checkLink: false },
        { address: "192.0.2.1" },
      ],
    });
    t.dumped();
    expect(t.link({ ifindex: 2, name: "eth0", flags: 0 })).toEqual([]);
    expect(t.linkDeleted(3)).toEqual([]);
    // The config's checkLink false turns the watch off for everyone; on again, it holds.
    const u = table();
    u.configure({ checkLink: false, peers: [{ address: "10.0.0.2" }] });
    u.dumped();
    expect(u.link({ ifindex: 2, name: "eth0", flags: 0 })).toEqual([]);
    expect(u.configure({ peers: [{ address: "10.0.0.2" }] })).toEqual([
      { peer: "10.0.0.2", held: true, reason: "link eth0 down" },
    ]);
    expect(u.configure({ checkLink: false, peers: [{ address: "10.0.0.2" }] })).toEqual([
      { peer: "10.0.0.2", held: false, reason: "link eth0 up" },
    ]);
  });

  it("GTSM with 1 hop is directly connected, with 2 it is not", () => {
    const t = table();
    t.configure({
      peers: [
        { address: "10.0.0.2", ttlSecurity: 1 },
        { address: "10.1.0.9", ttlSecurity: 2 },
      ],
    });
    t.dumped();
    expect(t.link({ ifindex: 2, name: "eth0", flags: 0 }).map((h) => h.peer)).toEqual(["10.0.0.2"]);
    expect(t.link({ ifindex: 3, name: "eth1", flags: 0 })).toEqual([]);
  });

  it("an unnumbered peer follows its interface by name, also when it comes back under a new index", () => {
    const t = table();
    t.configure({ peers: [{ address: "fe80::2%eth1", interface: "eth1" }] });
    t.dumped();
    expect(t.linkDeleted(3)).toEqual([
      { peer: "fe80::2%eth1", held: true, reason: "link eth1 gone" },
    ]);
    expect(t.link({ ifindex: 9, name: "eth1", flags: IFF_UP })).toEqual([]);
    expect(t.link({ ifindex: 9, name: "eth1", flags: UP })).toEqual([
      { peer: "fe80::2%eth1", held: false, reason: "link eth1 up" },
    ]);
    expect(t.held()).toEqual([]);
  });

  it("an IPv6 peer on a connected /64", () => {
    const t = new PeerLinks();
    t.link({ ifindex: 2, name: "eth0", flags: UP });
    const a = new Uint8Array(16);
    a.set([0xfd, 0, 0, 0, 0, 0, 0, 1]);
    a[15] = 1;
    t.addr({ ifindex: 2, family: 6, prefixLen: 64, address: a }, true);
    t.configure({ peers: [{ address: "fd00:0:0:1::2" }] });
    t.dumped();
    expect(t.link({ ifindex: 2, name: "eth0", flags: 0 })).toEqual([
      { peer: "fd00:0:0:1::2", held: true, reason: "link eth0 down" },
    ]);
    expect(t.held()).toEqual([{ peer: "fd00:0:0:1::2", held: true, reason: "link eth0 down" }]);
  });
});
