// Fuzz test of the decoder contract: random and mutated messages (truncations, length fields off
// by one, flags flipped, attribute types swapped, bit flips) either decode to a value whose
// views can be walked and re-encoded, or throw NotificationError; nothing else, and quickly.
// Inputs that once broke the contract are kept in test/fixtures/wire/corpus/ and replayed.
// FUZZ_COUNT=200000 FUZZ_SEED=7 npx vitest run test/wire/fuzz.test.ts runs a longer campaign.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Afi, AttrType, MessageType } from "../../src/bgp/wire/constants.js";
import { describeFields, describeMessage } from "../../src/bgp/wire/describe.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { decodeMessage } from "../../src/bgp/wire/message.js";
import { nlriToText, prefixArrayFromText } from "../../src/bgp/wire/nlri.js";
import { encodeOpen } from "../../src/bgp/wire/open.js";
import {
  emptyAttributes,
  familyKey,
  type NlriView,
  NotificationError,
  type SessionOptions,
  sessionOptions,
} from "../../src/bgp/wire/types.js";
import { encodeUpdateMessage, encodeUpdates } from "../../src/bgp/wire/update.js";

const fixtures = join(import.meta.dirname, "../fixtures/wire");
const COUNT = Number(process.env.FUZZ_COUNT ?? 30000);
const SEED = Number(process.env.FUZZ_SEED ?? 1);

/** xorshift32: deterministic, so a failure names its seed and index. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  return { next, int: (n: number) => Math.floor(next() * n) };
}

function readHexLines(file: string): Uint8Array[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.replace(/^[<>]\s*/, "").trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => Uint8Array.from(Buffer.from(l, "hex")));
}

const golden = readdirSync(fixtures)
  .filter((f) => f.endsWith(".hex"))
  .flatMap((f) => readHexLines(join(fixtures, f)));

function generated(): Uint8Array[] {
  const a = emptyAttributes();
  a.origin = 2;
  a.asPath = [
    { type: 3, asns: [64512] },
    { type: 2, asns: [65001, 4200000001] },
    { type: 1, asns: [1, 2] },
  ];
  a.nextHop = 0x0a000001;
  a.med = 5;
  a.localPref = 100;
  a.atomicAggregate = true;
  a.aggregator = { asn: 4200000001, address: 1 };
  a.communities = Uint32Array.of(0xffffff01, 1);
  a.extendedCommunities = new Uint8Array(16).fill(3);
  a.largeCommunities = Uint32Array.of(1, 2, 3);
  a.originatorId = 7;
  a.clusterList = Uint32Array.of(1, 2);
  a.unknown = [{ flags: 0xc0, type: 99, data: Uint8Array.of(1, 2, 3) }];
  const out: Uint8Array[] = [];
  for (const four of [true, false]) {
    const ap = new Set([familyKey(1, 1), familyKey(2, 1)]);
    const opts = sessionOptions({ fourOctetAs: four, addPath: { receive: ap, send: ap } });
    const v4 = prefixArrayFromText(Afi.Ipv4, [
      { prefix: "10.0.0.0/8", pathId: 1 },
      { prefix: "192.168.1.128/25", pathId: 2 },
      { prefix: "0.0.0.0/0", pathId: 3 },
    ]);
    const v6 = prefixArrayFromText(Afi.Ipv6, [
      { prefix: "2001:db8::/32", pathId: 1 },
      { prefix: "::/0", pathId: 2 },
    ]);
    out.push(
      ...encodeUpdates({ afi: 1, safi: 1, attributes: a, announce: v4, withdraw: v4 }, opts),
    );
    out.push(
      ...encodeUpdates(
        {
          afi: 2,
          safi: 1,
          attributes: a,
          mpNextHop: new Uint8Array(32).fill(0xfe),
          announce: v6,
          withdraw: v6,
        },
        opts,
      ),
    );
  }
  return out;
}

const seeds = [...golden, ...generated()];

const optionSets: SessionOptions[] = [true, false].flatMap((four) =>
  [false, true].flatMap((ap) =>
    [false, true].map((ext) => {
      const s = new Set(ap ? [familyKey(1, 1), familyKey(2, 1)] : []);
      return sessionOptions({
        fourOctetAs: four,
        addPath: { receive: s, send: s },
        extendedNextHop: ap,
        external: ext,
      });
    }),
  ),
);

function walk(v: NlriView | undefined | null): number {
  return v ? nlriToText(v).length : 0;
}

/** The contract: a value (usable: views walk, re-encodes) or a NotificationError. */
function check(msg: Uint8Array, opts: SessionOptions): "ok" | "notification" {
  try {
    describeFields(msg);
    const d = decodeMessage(msg, opts);
    describeMessage(d);
    if (d.type === MessageType.Update) {
      const u = d.update;
      const n =
        walk(u.withdrawn) +
        walk(u.nlri) +
        walk(u.attributes?.mpReach?.nlri) +
        walk(u.attributes?.mpUnreach?.withdrawn);
      expect(n).toBe(
        u.withdrawn.count +
          u.nlri.count +
          (u.attributes?.mpReach?.nlri.count ?? 0) +
          (u.attributes?.mpUnreach?.withdrawn.count ?? 0),
      );
      encodeUpdateMessage(u, opts);
    } else if (d.type === MessageType.Open) {
      encodeOpen(d.open);
    }
    return "ok";
  } catch (e) {
    if (e instanceof NotificationError) {
      expect(e.code).toBeGreaterThanOrEqual(1);
      expect(e.code).toBeLessThanOrEqual(7);
      return "notification";
    }
    throw new Error(
      `Contract broken by ${Buffer.from(msg).toString("hex")} (fourOctetAs=${opts.fourOctetAs}): ${(e as Error).stack}`,
    );
  }
}

function setLength(m: Uint8Array): Uint8Array {
  if (m.length >= 18) {
    m[16] = (m.length >> 8) & 0xff;
    m[17] = m.length & 0xff;
  }
  return m;
}

/** Offsets of the path attributes of an UPDATE (best effort on mutated input). */
function attributeOffsets(m: Uint8Array): number[] {
  if (m[18] !== MessageType.Update || m.length < 23) return [];
  const wd = (m[19] << 8) | m[20];
  let o = 23 + wd;
  const end = Math.min(m.length, o + ((m[21 + wd] << 8) | m[22 + wd]));
  const offs: number[] = [];
  while (o + 3 <= end && offs.length < 64) {
    offs.push(o);
    const len = m[o] & 0x10 ? (m[o + 2] << 8) | m[o + 3] : m[o + 2];
    o += (m[o] & 0x10 ? 4 : 3) + len;
  }
  return offs;
}

const knownTypes = Object.values(AttrType);

function mutate(r: ReturnType<typeof rng>, seed: Uint8Array): Uint8Array {
  const m = seed.slice();
  switch (r.int(9)) {
    case 0: // truncation, header fixed up so the framer accepts it
      return setLength(m.slice(0, 19 + r.int(Math.max(1, m.length - 19))));
    case 1: // header length off by one
      return setLength(m).map((b, i) => (i === 17 ? (b + (r.next() < 0.5 ? 1 : 255)) & 0xff : b));
    case 2: {
      // withdrawn / total attribute length off by one (or random)
      if (m.length < 23) return m;
      const wd = (m[19] << 8) | m[20];
      const at = r.next() < 0.5 ? 20 : Math.min(m.length - 2, 22 + wd);
      m[at] = r.next() < 0.3 ? r.int(256) : (m[at] + (r.next() < 0.5 ? 1 : 255)) & 0xff;
      return m;
    }
    case 3: {
      // attribute flags flipped
      const offs = attributeOffsets(m);
      if (offs.length) m[offs[r.int(offs.length)]] ^= [0x80, 0x40, 0x20, 0x10][r.int(4)];
      return m;
    }
    case 4: {
      // attribute types swapped
      const offs = attributeOffsets(m);
      if (offs.length)
        m[offs[r.int(offs.length)] + 1] =
          r.next() < 0.8 ? knownTypes[r.int(knownTypes.length)] : r.int(256);
      return m;
    }
    case 5: {
      // attribute length off by one
      const offs = attributeOffsets(m);
      if (offs.length) {
        const o = offs[r.int(offs.length)];
        const at = m[o] & 0x10 ? o + 3 : o + 2;
        m[at] = (m[at] + (r.next() < 0.5 ? 1 : 255)) & 0xff;
      }
      return m;
    }
    case 6: // bit flips in the body
      for (let k = 1 + r.int(4); k > 0 && m.length > 19; k--)
        m[19 + r.int(m.length - 19)] ^= 1 << r.int(8);
      return m;
    case 7: {
      // insert or delete a byte, length fixed up
      const at = 19 + r.int(Math.max(1, m.length - 19));
      const out =
        r.next() < 0.5
          ? Uint8Array.from([...m.subarray(0, at), r.int(256), ...m.subarray(at)])
          : Uint8Array.from([...m.subarray(0, at), ...m.subarray(at + 1)]);
      return setLength(out);
    }
    default: {
      // random body after a valid marker and a random known type
      const body = Uint8Array.from({ length: r.int(120) }, () => r.int(256));
      const out = new Uint8Array(19 + body.length);
      out.fill(0xff, 0, 16);
      out[18] = 1 + r.int(5);
      out.set(body, 19);
      return setLength(out);
    }
  }
}

describe("decoder fuzz (contract only)", () => {
  it("replays the crasher corpus", () => {
    const dir = join(fixtures, "corpus");
    const inputs = readdirSync(dir)
      .filter((f) => f.endsWith(".hex"))
      .flatMap((f) => readHexLines(join(dir, f)));
    expect(inputs.length).toBeGreaterThan(0);
    for (const m of inputs) for (const o of optionSets) check(m, o);
  });

  it(`survives ${COUNT} mutated and random messages (seed ${SEED})`, () => {
    const r = rng(SEED);
    const t0 = Date.now();
    const tally = { ok: 0, notification: 0 };
    for (let i = 0; i < COUNT; i++) {
      let m = seeds[r.int(seeds.length)];
      for (let k = 1 + r.int(3); k > 0; k--) m = mutate(r, m);
      const opts = optionSets[r.int(optionSets.length)];
      tally[check(m, opts)]++;
      // Through the framer too: it must yield messages or throw NotificationError.
      try {
        for (const f of new MessageFramer(65535).push(m)) check(f, opts);
      } catch (e) {
        if (!(e instanceof NotificationError)) throw e;
      }
    }
    // Both outcomes must really occur, or the mutations are not reaching the decoder.
    expect(tally.ok).toBeGreaterThan(COUNT / 20);
    expect(tally.notification).toBeGreaterThan(COUNT / 20);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });
});
