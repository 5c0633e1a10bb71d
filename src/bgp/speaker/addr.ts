// Address helpers of the speaker: the local addresses that face a peer (next hop self), subnet
// membership, and conversions between the RIB's PrefixList, text prefixes and the codec's
// PrefixArray. Not: routing decisions.
import { networkInterfaces } from "node:os";
import { ipv4Number } from "../fsm/fsm.js";
import type { PrefixList } from "../rib/prefix.js";
import { Afi } from "../wire/constants.js";
import type { PrefixArray } from "../wire/types.js";

export function toPrefixArray(list: PrefixList, afi: number): PrefixArray {
  const pathIds = list.pathIds === null ? null : Uint32Array.from(list.pathIds);
  return { afi, count: list.count, addrs: list.words, lens: list.lens, pathIds };
}

/**
 * The host's interfaces, read once per synchronous run (a config with 1,000 peers asks for
 * each: os.networkInterfaces() walks every address each time, ~0.25 ms).
 */
let interfacesNow: ReturnType<typeof networkInterfaces> | undefined;
function interfaces(): ReturnType<typeof networkInterfaces> {
  if (interfacesNow === undefined) {
    interfacesNow = networkInterfaces();
    queueMicrotask(() => {
      interfacesNow = undefined;
    });
  }
  return interfacesNow;
}

/** Local addresses on the interface that reaches `peer` directly (same subnet), if any. */
export function localAddressesToward(peer: string): { v4?: string; v6?: string } {
  const zone = peer.indexOf("%");
  if (zone >= 0) {
    // Unnumbered (a link-local peer on an interface): the interface's own addresses, a global
    // IPv6 one before our link-local (which gets the zone too).
    const iface = peer.slice(zone + 1);
    const addrs = interfaces()[iface] ?? [];
    const v4 = addrs.find((a) => a.family === "IPv4")?.address;
    const ll = (a: { address: string }) => a.address.toLowerCase().startsWith("fe80");
    const g6 = addrs.find((a) => a.family === "IPv6" && !ll(a))?.address;
    const l6 = addrs.find((a) => a.family === "IPv6" && ll(a))?.address;
    const v6 = g6 ?? (l6 ? `${l6.split("%")[0]}%${iface}` : undefined);
    return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
  }
  const want4 = !peer.includes(":");
  for (const addrs of Object.values(interfaces())) {
    if (!addrs) continue;
    const hit = addrs.find(
      (a) => (a.family === "IPv4") === want4 && a.cidr && !a.internal && sameSubnet(a.cidr, peer),
    );
    if (!hit) continue;
    const v4 = addrs.find((a) => a.family === "IPv4")?.address;
    const v6 = addrs.find(
      (a) => a.family === "IPv6" && !a.address.toLowerCase().startsWith("fe80"),
    )?.address;
    return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
  }
  return {};
}

export function sameSubnet(cidr: string, addr: string): boolean {
  const [net, lenText] = cidr.split("/");
  const len = Number(lenText);
  if (!net) return false;
  if (!addr.includes(":")) {
    if (net.includes(":")) return false;
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    return (ipv4Number(net) & mask) >>> 0 === (ipv4Number(addr) & mask) >>> 0;
  }
  if (!net.includes(":")) return false;
  const a = expand6(net);
  const b = expand6(addr);
  for (let bit = 0; bit < len; bit++) {
    const i = bit >> 4;
    const m = 0x8000 >> (bit & 15);
    if (((a[i] ?? 0) & m) !== ((b[i] ?? 0) & m)) return false;
  }
  return true;
}

export function expand6(s: string): number[] {
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":").map((x) => Number.parseInt(x, 16)) : [];
  const t = tail ? tail.split(":").map((x) => Number.parseInt(x, 16)) : [];
  return [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

export function textPrefixArray(list: string[], fam: 4 | 6): PrefixArray {
  const addrs = new Uint32Array(list.length * (fam === 4 ? 1 : 4));
  const lens = new Uint8Array(list.length);
  list.forEach((p, i) => {
    const [a, l] = p.split("/") as [string, string];
    lens[i] = Number(l);
    if (fam === 4) addrs[i] = ipv4Number(a);
    else {
      const w = expand6(a);
      for (let j = 0; j < 4; j++)
        addrs[i * 4 + j] = (((w[j * 2] ?? 0) << 16) | (w[j * 2 + 1] ?? 0)) >>> 0;
    }
  });
  return { afi: fam === 4 ? Afi.Ipv4 : Afi.Ipv6, count: list.length, addrs, lens, pathIds: null };
}
