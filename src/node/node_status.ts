// `ocelot node status`: the report calicoctl's `node status` prints (the BGP peers table: peer
// address, peer type, state, since, info), and per peer and family the prefixes received,
// accepted, rejected by import (by reason), advertised and installed in the kernel (counted
// against the kernel's own table, read by the caller), the last NOTIFICATION that ended the
// session with its RFC name, and flaps. Pure: values in, the report (its JSON is documented by
// config/node-status.schema.json) and its text out. Not: reading the socket or the kernel.
import type { PeerStatus, RoutesSnapshot, StatusSnapshot } from "../bgp/status.js";
import { codeName, NotificationCode, subcodeMap } from "../bgp/wire/constants.js";
import type { PeerKind } from "./bgp_state.js";

export const NODE_STATUS_SCHEMA_VERSION = 1;

/** calicoctl's words for a peer's type, and ours for route reflection. */
export type PeerTypeText =
  | "node-to-node mesh"
  | "global"
  | "node specific"
  | "reflector"
  | "reflector client"
  | "configured";

export interface FamilyPrefixes {
  /** "ipv4-unicast", "ipv6-unicast", or both joined by "+" for a session that carries both. */
  family: string;
  received: number;
  accepted: number;
  /** Paths held now that import refused (received - accepted). */
  rejected: number;
  /** Paths a BGPFilter refused since the peer was configured (each refusal counted). */
  rejectedByFilter: number;
  /** Refusals since the peer was configured, by reason (FilterReject, AsPathLoop, ...). */
  rejectedByReason: Record<string, number>;
  advertised: number;
  /** Routes whose best path is this peer's and that are in the kernel's table now. */
  installed: number;
}

export interface NotificationReport {
  direction: "sent" | "received";
  code: number;
  subcode: number;
  /** RFC names, e.g. "Cease / AdministrativeShutdown". */
  reason: string;
  message?: string;
}

export interface PeerReport {
  peerAddress: string;
  peerType: PeerTypeText;
  /** Calico's CalicoNodeStatus BGPPeerType, when the node daemon rendered the peer. */
  calicoType: PeerKind["type"] | null;
  /** The BGPPeer (or, for the mesh, the Node) the peer comes from. */
  source: string | null;
  asn: number;
  /** As BIRD's protocol state in calicoctl: "up" when Established, else "start". */
  state: "up" | "start";
  bgpState: string;
  /** When the session came up (ISO 8601), for an Established session; else null. */
  since: string | null;
  info: string;
  families: FamilyPrefixes[];
  lastNotification: NotificationReport | null;
  /** Times the session went down after being Established. */
  flaps: number;
  establishedTransitions: number;
}

export interface NodeStatusReport {
  schemaVersion: typeof NODE_STATUS_SCHEMA_VERSION;
  node: string | null;
  routerId: string;
  asn: number;
  uptimeSeconds: number;
  ready: boolean;
  readyReason: string | null;
  peersV4: PeerReport[];
  peersV6: PeerReport[];
  locRib: { ipv4: number; ipv6: number };
  kernel: { checked: boolean; installed: number };
}

export interface NodeInfo {
  nodename: string;
  peerKinds: Record<string, PeerKind>;
  ready: { ok: boolean; reason?: string };
}

/** "Cease / AdministrativeShutdown": the RFC names of a NOTIFICATION's code and subcode. */
export function notificationReason(code: number, subcode: number): string {
  const map = subcodeMap(code);
  const sub = map ? codeName(map, subcode) : String(subcode);
  return `${codeName(NotificationCode, code)} / ${sub}`;
}

function peerTypeText(kind: PeerKind | undefined): PeerTypeText {
  if (!kind) return "configured";
  if (kind.role === "reflector") return "reflector";
  if (kind.role === "client") return "reflector client";
  if (kind.type === "NodeMesh") return "node-to-node mesh";
  return kind.type === "GlobalPeer" ? "global" : "node specific";
}

function lastNotification(p: PeerStatus): NotificationReport | null {
  const e = p.lastError;
  if (!e || e.code === undefined) return null;
  if (e.kind !== "NotificationSent" && e.kind !== "NotificationReceived") return null;
  const subcode = e.subcode ?? 0;
  return {
    direction: e.kind === "NotificationSent" ? "sent" : "received",
    code: e.code,
    subcode,
    reason: notificationReason(e.code, subcode),
    ...(e.message ? { message: e.message } : {}),
  };
}

function infoText(p: PeerStatus): string {
  if (p.state === "Established") return "Established";
  const e = p.lastError;
  if (!e) return p.state;
  const n = lastNotification(p);
  if (n) return `${p.state} NOTIFICATION ${n.direction}: ${n.reason}`;
  return `${p.state} ${e.kind}${e.message ? `: ${e.message}` : ""}`;
}

const familyOfAddress = (a: string) => (a.includes(":") ? "ipv6-unicast" : "ipv4-unicast");

/**
 * The report. `kernelPrefixes` is the set of prefixes in the kernel under the speaker's protocol
 * (undefined when the kernel could not be read: installed counts are then 0 and
 * kernel.checked false).
 */
export function nodeStatusReport(
  status: StatusSnapshot,
  routes: RoutesSnapshot,
  info: NodeInfo | undefined,
  kernelPrefixes: ReadonlySet<string> | undefined,
  nowMs: number,
): NodeStatusReport {
  const installedBy = new Map<string, number>();
  let installed = 0;
  if (kernelPrefixes) {
    for (const r of routes.routes) {
      if (!kernelPrefixes.has(r.prefix)) continue;
      installed++;
      installedBy.set(r.best.peer, (installedBy.get(r.best.peer) ?? 0) + 1);
    }
  }
  const peers = status.peers.map((p): PeerReport => {
    const kind = info?.peerKinds[p.address];
    const fams = p.negotiated?.families ?? [familyOfAddress(p.address)];
    const rejectedByReason = p.prefixes.rejected ?? {};
    const rejected = Math.max(0, p.prefixes.received - p.prefixes.accepted);
    const flaps = p.establishedTransitions - (p.state === "Established" ? 1 : 0);
    return {
      peerAddress: p.address,
      peerType: peerTypeText(kind),
      calicoType: kind?.type ?? null,
      source: kind?.source ?? null,
      asn: p.asn,
      state: p.state === "Established" ? "up" : "start",
      bgpState: p.state,
      since:
        p.uptimeSeconds === null ? null : new Date(nowMs - p.uptimeSeconds * 1000).toISOString(),
      info: infoText(p),
      families: [
        {
          family: fams.join("+"),
          received: p.prefixes.received,
          accepted: p.prefixes.accepted,
          rejectedByFilter: rejectedByReason.FilterReject ?? 0,
          rejected,
          rejectedByReason,
          advertised: p.prefixes.advertised,
          installed: installedBy.get(p.address) ?? 0,
        },
      ],
      lastNotification: lastNotification(p),
      flaps: Math.max(0, flaps),
      establishedTransitions: p.establishedTransitions,
    };
  });
  return {
    schemaVersion: NODE_STATUS_SCHEMA_VERSION,
    node: info?.nodename ?? null,
    routerId: status.routerId,
    asn: status.asn,
    uptimeSeconds: status.uptimeSeconds,
    ready: info ? info.ready.ok : peers.every((p) => p.state === "up"),
    readyReason: info?.ready.reason ?? null,
    peersV4: peers.filter((p) => !p.peerAddress.includes(":")),
    peersV6: peers.filter((p) => p.peerAddress.includes(":")),
    locRib: status.locRib,
    kernel: { checked: kernelPrefixes !== undefined, installed },
  };
}

/** A table with +---+ borders, as calicoctl prints it. */
function boxed(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const rule = `+${w.map((n) => "-".repeat(n + 2)).join("+")}+`;
  const line = (r: string[], center = false) =>
    `|${r
      .map((c, i) => {
        const n = w[i] ?? 0;
        if (!center) return ` ${c.padEnd(n)} `;
        const left = Math.floor((n - c.length) / 2);
        return ` ${" ".repeat(left)}${c}${" ".repeat(n - c.length - left)} `;
      })
      .join("|")}|`;
  return [rule, line(header, true), rule, ...rows.map((r) => line(r)), rule].join("\n");
}

function sinceText(iso: string | null, nowMs: number): string {
  if (iso === null) return "-";
  const t = new Date(iso);
  // Today: the time of day (UTC), as BIRD's default; earlier: the date.
  return nowMs - t.getTime() < 86_400_000 ? iso.slice(11, 19) : iso.slice(0, 10);
}

/** The text calicoctl prints, followed by the prefix counters per peer and family. */
export function formatNodeStatus(r: NodeStatusReport, nowMs: number): string {
  const out: string[] = [
    `Ocelot node ${r.node ?? "(bgpd)"} is running: router ID ${r.routerId}, AS ${r.asn}, ${
      r.ready ? "ready" : `not ready (${r.readyReason ?? "peers not Established"})`
    }.`,
    "",
  ];
  for (const [v, peers] of [
    ["IPv4", r.peersV4],
    ["IPv6", r.peersV6],
  ] as const) {
    out.push(`${v} BGP status`);
    if (peers.length === 0) {
      out.push(`No ${v} peers found.`, "");
      continue;
    }
    out.push(
      boxed(
        ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
        peers.map((p) => [p.peerAddress, p.peerType, p.state, sinceText(p.since, nowMs), p.info]),
      ),
      "",
    );
  }
  const all = [...r.peersV4, ...r.peersV6];
  if (all.length > 0) {
    out.push(
      `Prefixes (installed: checked against the kernel${r.kernel.checked ? "" : " - NOT READ, shown as 0"})`,
    );
    out.push(
      boxed(
        [
          "PEER ADDRESS",
          "FAMILY",
          "RECEIVED",
          "ACCEPTED",
          "REJECTED BY FILTER",
          "ADVERTISED",
          "INSTALLED",
          "FLAPS",
          "LAST NOTIFICATION",
        ],
        all.flatMap((p) =>
          p.families.map((f) => [
            p.peerAddress,
            f.family,
            String(f.received),
            String(f.accepted),
            String(f.rejectedByFilter),
            String(f.advertised),
            String(f.installed),
            String(p.flaps),
            p.lastNotification
              ? `${p.lastNotification.direction} ${p.lastNotification.code}/${p.lastNotification.subcode} ${p.lastNotification.reason}`
              : "-",
          ]),
        ),
      ),
      "",
    );
  }
  return `${out.join("\n")}\n`;
}
