// Replays of the speaker's core: each file in test/bgp/scenarios/ gives a configuration and
// steps of events in with the actions expected out, run against SpeakerCore with no socket, no
// timer and a fake clock (an `advance` step moves it and fires the timers the core started, in
// time order). Bytes come from hex, from the golden captures of real BIRD/FRR/GoBGP sessions in
// test/fixtures/wire ("file.hex > 3": the third message sent by the '>' side), or from an
// `open`, `keepalive`, `eor` (IPv4 End-of-RIB, `eor: 6` IPv6's) or `update` (IPv6 when its
// prefixes are) written as fields and encoded by the codec. Actions are compared as one line each.
// REPLAY_UPDATE=1 writes the actual actions into the files (review the diff before committing).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isMap, parseDocument } from "yaml";
import { parseConfig } from "../../src/bgp/config.js";
import { parsePrefix } from "../../src/bgp/rib/prefix.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { SpeakerCore } from "../../src/bgp/speaker/core.js";
import {
  type SpeakerAction,
  type SpeakerEvent,
  type TimerKey,
  timerId,
} from "../../src/bgp/speaker/events.js";
import { Afi, Safi } from "../../src/bgp/wire/constants.js";
import { describeBytes } from "../../src/bgp/wire/describe.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { parseIpv4, parseIpv6 } from "../../src/bgp/wire/nlri.js";
import { encodeOpen, myAsField } from "../../src/bgp/wire/open.js";
import {
  emptyAttributes,
  Ipv4Unicast,
  Ipv6Unicast,
  type PrefixArray,
  sessionOptions,
} from "../../src/bgp/wire/types.js";
import { encodeEndOfRib, encodeUpdates } from "../../src/bgp/wire/update.js";

const DIR = join(__dirname, "scenarios");
const FIXTURES = join(__dirname, "../fixtures/wire");

interface UpdateFields {
  asPath?: number[];
  nextHop?: string;
  origin?: number;
  med?: number;
  localPref?: number;
  /** RFC 1997 communities as "65535:7". */
  communities?: string[];
  announce?: string[];
  withdraw?: string[];
}

type StepIn = (Record<string, unknown> & { kind: string }) | { advance: number };

interface Step {
  note?: string;
  in?: StepIn;
  advance?: number;
  out: string[];
}

interface Scenario {
  config: Record<string, unknown>;
  near?: Record<string, { v4?: string; v6?: string }>;
  fib?: boolean;
  steps: Step[];
}

/** The messages of a golden capture by side: "<" and ">" lists of bytes. */
function fixtureMessages(file: string): Record<"<" | ">", Uint8Array[]> {
  const out: Record<"<" | ">", Uint8Array[]> = { "<": [], ">": [] };
  for (const line of readFileSync(join(FIXTURES, file), "utf8").split("\n")) {
    const m = /^([<>]) ([0-9a-f]+)$/.exec(line.trim());
    if (m) out[m[1] as "<" | ">"].push(Uint8Array.from(Buffer.from(m[2] as string, "hex")));
  }
  return out;
}

function fixtureBytes(ref: string): Uint8Array {
  const m = /^(\S+) ([<>]) (\d+)$/.exec(ref);
  if (!m) throw new Error(`Fixture reference "${ref}" is not "file.hex > N"`);
  const msg = fixtureMessages(m[1] as string)[m[2] as "<" | ">"][Number(m[3]) - 1];
  if (!msg) throw new Error(`Fixture reference "${ref}": no such message`);
  return msg;
}

function prefixArray(list: string[], fam: 4 | 6): PrefixArray {
  const addrs = new Uint32Array(list.length * (fam === 4 ? 1 : 4));
  const lens = new Uint8Array(list.length);
  list.forEach((text, i) => {
    const p = parsePrefix(text);
    lens[i] = p.len;
    if (fam === 4) addrs[i] = parseIpv4(text.split("/")[0] as string);
    else addrs.set(parseIpv6(text.split("/")[0] as string), i * 4);
  });
  return { afi: fam === 4 ? Afi.Ipv4 : Afi.Ipv6, count: list.length, addrs, lens, pathIds: null };
}

/** An UPDATE from fields, encoded by the codec (4-octet AS); IPv6 (MP_REACH) for IPv6 prefixes. */
function updateBytes(u: UpdateFields): Uint8Array {
  const fam = [...(u.announce ?? []), ...(u.withdraw ?? [])].some((x) => x.includes(":")) ? 6 : 4;
  const opts = sessionOptions();
  const a = emptyAttributes();
  a.origin = u.origin ?? 0;
  a.asPath = u.asPath ? [{ type: 2, asns: u.asPath }] : [];
  a.nextHop = u.nextHop && fam === 4 ? parseIpv4(u.nextHop) : null;
  if (u.med !== undefined) a.med = u.med;
  if (u.localPref !== undefined) a.localPref = u.localPref;
  if (u.communities?.length)
    a.communities = Uint32Array.from(
      u.communities.map((c) => {
        const [hi, lo] = c.split(":").map(Number);
        return ((hi as number) * 65536 + (lo as number)) >>> 0;
      }),
    );
  const base = {
    afi: fam === 4 ? Afi.Ipv4 : Afi.Ipv6,
    safi: Safi.Unicast,
    ...(fam === 6 && u.nextHop ? { mpNextHop: ipv6Bytes(u.nextHop) } : {}),
  };
  const msgs: Uint8Array[] = [];
  if (u.withdraw?.length)
    msgs.push(
      ...encodeUpdates({ ...base, attributes: null, withdraw: prefixArray(u.withdraw, fam) }, opts),
    );
  if (u.announce?.length)
    msgs.push(
      ...encodeUpdates({ ...base, attributes: a, announce: prefixArray(u.announce, fam) }, opts),
    );
  if (msgs.length !== 1) throw new Error("An update step must encode to exactly one UPDATE");
  return msgs[0] as Uint8Array;
}

function ipv6Bytes(text: string): Uint8Array {
  const w = parseIpv6(text);
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < 4; i++) dv.setUint32(i * 4, w[i] as number);
  return b;
}

/** A peer's graceful-restart capability in an `open` step (RFC 4724, RFC 8538's N bit). */
interface OpenGr {
  time: number;
  restarting?: boolean;
  n?: boolean;
  /** The Forwarding State bit for IPv4 unicast (default true). */
  f?: boolean;
  /** The Forwarding State bit for IPv6 unicast (default true). */
  f6?: boolean;
}

/** A family's entry of a long-lived GR capability: its stale time, or that and its F bit. */
type OpenLlgrFamily = number | { stale: number; f?: boolean };

/**
 * An OPEN from fields: route refresh, 4-octet AS (what a plain peer sends), multiprotocol for
 * `families` (default [4]: IPv4 unicast), graceful restart for those families when `gr` is
 * given; long-lived GR (RFC 9494) with that stale time (seconds) for each family when `llgr` is
 * a number, or per family (`{v4: 30, v6: {stale: 60, f: false}}`; the F bit defaults to set).
 */
function openBytes(o: {
  asn: number;
  id: string;
  holdTime?: number;
  families?: (4 | 6)[];
  gr?: OpenGr;
  llgr?: number | { v4?: OpenLlgrFamily; v6?: OpenLlgrFamily };
}): Uint8Array {
  const fams = o.families ?? [4];
  const afi = (f: 4 | 6) => (f === 4 ? Afi.Ipv4 : Afi.Ipv6);
  const llgrOf = (f: 4 | 6): OpenLlgrFamily | undefined =>
    typeof o.llgr === "number" ? o.llgr : f === 4 ? o.llgr?.v4 : o.llgr?.v6;
  const llgrFams = fams.flatMap((f) => {
    const x = llgrOf(f);
    if (x === undefined) return [];
    const e = typeof x === "number" ? { stale: x } : x;
    return [{ afi: afi(f), safi: Safi.Unicast, forwardingState: e.f ?? true, staleTime: e.stale }];
  });
  return encodeOpen({
    version: 4,
    myAs: myAsField(o.asn),
    holdTime: o.holdTime ?? 90,
    bgpIdentifier: parseIpv4(o.id),
    capabilities: [
      ...fams.map((f) => ({ kind: "Multiprotocol" as const, afi: afi(f), safi: Safi.Unicast })),
      { kind: "RouteRefresh" },
      { kind: "FourOctetAs", asn: o.asn },
      ...(o.gr
        ? [
            {
              kind: "GracefulRestart" as const,
              restartState: o.gr.restarting ?? false,
              notification: o.gr.n ?? false,
              restartTime: o.gr.time,
              families: fams.map((f) => ({
                afi: afi(f),
                safi: Safi.Unicast,
                forwardingState: (f === 4 ? o.gr?.f : o.gr?.f6) ?? true,
              })),
            },
          ]
        : []),
      ...(o.llgr !== undefined
        ? [{ kind: "LongLivedGracefulRestart" as const, families: llgrFams }]
        : []),
    ],
  });
}

function toEvent(raw: Record<string, unknown>): SpeakerEvent {
  const ev = { ...raw } as Record<string, unknown>;
  if (ev.kind === "received") {
    if (typeof ev.hex === "string") ev.bytes = Uint8Array.from(Buffer.from(ev.hex, "hex"));
    else if (typeof ev.fixture === "string") ev.bytes = fixtureBytes(ev.fixture);
    else if (ev.update) ev.bytes = updateBytes(ev.update as UpdateFields);
    else if (ev.open) ev.bytes = openBytes(ev.open as Parameters<typeof openBytes>[0]);
    else if (ev.keepalive) ev.bytes = encodeKeepalive();
    else if (ev.eor) ev.bytes = encodeEndOfRib(ev.eor === 6 ? Ipv6Unicast : Ipv4Unicast);
    for (const k of ["hex", "fixture", "update", "open", "keepalive", "eor"]) delete ev[k];
  }
  if (ev.kind === "reconfigure") ev.config = parseConfig(ev.config);
  return ev as unknown as SpeakerEvent;
}

class Replay {
  now = 0;
  readonly timers = new Map<string, { at: number; seq: number; key: TimerKey }>();
  private seq = 0;
  readonly core: SpeakerCore<unknown>;

  constructor(s: Scenario) {
    this.core = new SpeakerCore(parseConfig(s.config), {
      bridge: makeWireBridge(),
      now: () => this.now,
      fib: s.fib ?? true,
      localAddressesToward: (p) => s.near?.[p] ?? {},
    }) as SpeakerCore<unknown>;
  }

  handle(ev: SpeakerEvent): string[] {
    const actions = this.core.handle(ev);
    for (const a of actions) {
      if (a.kind === "startTimer")
        this.timers.set(timerId(a.timer), { at: this.now + a.ms, seq: this.seq++, key: a.timer });
      else if (a.kind === "stopTimer") this.timers.delete(timerId(a.timer));
    }
    return actions.flatMap((a) => this.render(a));
  }

  /** Moves the clock, firing due timers in time order (bounded). */
  advance(ms: number): string[] {
    const end = this.now + ms;
    const out: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      let due: { at: number; seq: number; key: TimerKey } | undefined;
      for (const t of this.timers.values())
        if (t.at <= end && (!due || t.at < due.at || (t.at === due.at && t.seq < due.seq))) due = t;
      if (!due) break;
      this.timers.delete(timerId(due.key));
      this.now = due.at;
      out.push(`at ${this.now}ms ${timerId(due.key)} expires`);
      out.push(...this.handle({ kind: "timerExpired", timer: due.key }));
    }
    this.now = end;
    return out;
  }

  private render(a: SpeakerAction): string[] {
    switch (a.kind) {
      case "connect":
        return [
          `connect ${a.peer} #${a.conn} to ${a.address}:${a.port}${a.localAddress ? ` from ${a.localAddress}` : ""} timeout ${a.timeoutMs}ms`,
        ];
      case "send": {
        const opts = this.core.peers.get(a.peer)?.session.options ?? sessionOptions();
        return [`send ${a.peer} #${a.conn} ${describeBytes(a.bytes, opts)}`];
      }
      case "close":
        return [`close ${a.peer} #${a.conn} ${a.how}`];
      case "pauseReading":
        return [`${a.paused ? "pause" : "resume"} reading ${a.peer} #${a.conn}`];
      case "startTimer":
        return [`timer start ${timerId(a.timer)} ${a.ms}ms`];
      case "stopTimer":
        return [`timer stop ${timerId(a.timer)}`];
      case "flushSoon":
        return ["flush soon"];
      case "fib": {
        const { set, remove } = a.batch.routes(a.protocol);
        const hops = (r: (typeof set)[number]) => r.nexthops.map((h) => h.gateway).join(",");
        return [
          ...remove.map((r) => `fib remove ${r.dst} proto ${a.protocol} table ${a.table}`),
          ...set.map((r) => `fib set ${r.dst} via ${hops(r)} proto ${a.protocol} table ${a.table}`),
        ];
      }
      case "fibEndGracefulHold":
        return ["fib end graceful hold"];
    }
  }
}

const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("speaker core replays (test/bgp/scenarios)", () => {
  it("has scenarios", () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  for (const file of files) {
    it(file.replace(/\.yaml$/, ""), () => {
      const path = join(DIR, file);
      const doc = parseDocument(readFileSync(path, "utf8"));
      const s = doc.toJS() as Scenario;
      const r = new Replay(s);
      const actual: string[][] = [];
      for (const step of s.steps) {
        if (step.advance !== undefined) actual.push(r.advance(step.advance));
        else if (step.in) actual.push(r.handle(toEvent(step.in as Record<string, unknown>)));
        else throw new Error(`${file}: a step needs "in" or "advance"`);
      }
      if (process.env.REPLAY_UPDATE) {
        actual.forEach((out, i) => {
          const node = doc.getIn(["steps", i]);
          if (isMap(node)) node.set("out", doc.createNode(out));
        });
        writeFileSync(path, doc.toString({ lineWidth: 0 }));
        return;
      }
      s.steps.forEach((step, i) => {
        expect(actual[i], `${file} step ${i + 1}${step.note ? ` (${step.note})` : ""}`).toEqual(
          step.out ?? [],
        );
      });
    });
  }
});
