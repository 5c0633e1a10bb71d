// The stream framer: any chunking gives the same messages; header errors give RFC 4271 §6.1
// NOTIFICATIONs; views are handed out without copies when a message lies inside one chunk.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MessageHeaderErrorSubcode, NotificationCode } from "../../src/bgp/wire/constants.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { NotificationError } from "../../src/bgp/wire/types.js";

const dir = join(import.meta.dirname, "../fixtures/wire");
/** Every golden message of every fixture, in file order: a realistic byte stream. */
const golden: Uint8Array[] = readdirSync(dir)
  .filter((f) => f.endsWith(".hex"))
  .flatMap((f) =>
    readFileSync(join(dir, f), "utf8")
      .split("\n")
      .filter((l) => l.startsWith(">") || l.startsWith("<"))
      .map((l) => Uint8Array.from(Buffer.from(l.slice(2).trim(), "hex"))),
  );
const stream = Buffer.concat(golden);
const hexes = golden.map((m) => Buffer.from(m).toString("hex"));

function feed(framer: MessageFramer, chunks: Uint8Array[]): string[] {
  return chunks.flatMap((c) => framer.push(c)).map((m) => Buffer.from(m).toString("hex"));
}

function notification(f: () => unknown): NotificationError {
  try {
    f();
  } catch (e) {
    if (e instanceof NotificationError) return e;
    throw e;
  }
  throw new Error("Expected a NotificationError");
}

describe("MessageFramer", () => {
  it("yields the golden messages when fed byte by byte", () => {
    expect(golden.length).toBeGreaterThan(50);
    const framer = new MessageFramer(65535);
    const chunks = Array.from(stream, (b) => Uint8Array.of(b));
    expect(feed(framer, chunks)).toEqual(hexes);
    expect(framer.buffered).toBe(0);
  });

  it("yields the same messages for any chunking (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 200 }),
        (sizes) => {
          const chunks: Uint8Array[] = [];
          let o = 0;
          for (let i = 0; o < stream.length; i++) {
            const n = sizes[i % sizes.length];
            chunks.push(stream.subarray(o, o + n));
            o += n;
          }
          expect(feed(new MessageFramer(65535), chunks)).toEqual(hexes);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("hands out views of the chunk when a message lies inside it", () => {
    const two = Buffer.concat([encodeKeepalive(), encodeKeepalive()]);
    const out = new MessageFramer().push(two);
    expect(out.length).toBe(2);
    expect(out[0].buffer).toBe(two.buffer);
    expect(out[1].byteOffset).toBe(two.byteOffset + 19);
  });

  it("RFC 4271 §6.1: a marker that is not all ones -> Connection Not Synchronized", () => {
    const k = encodeKeepalive();
    k[3] = 0;
    const e = notification(() => new MessageFramer().push(k));
    expect([e.code, e.subcode]).toEqual([
      NotificationCode.MessageHeaderError,
      MessageHeaderErrorSubcode.ConnectionNotSynchronized,
    ]);
  });

  it("RFC 4271 §6.1: a length below the type's minimum or above the maximum -> Bad Message Length with the length as data", () => {
    const k = encodeKeepalive();
    k[17] = 18;
    let e = notification(() => new MessageFramer().push(k));
    expect([e.code, e.subcode, ...e.data]).toEqual([
      1,
      MessageHeaderErrorSubcode.BadMessageLength,
      0,
      18,
    ]);
    const big = Uint8Array.from([...new Array(16).fill(0xff), 0x10, 0x01, 2]); // 4097, UPDATE
    e = notification(() => new MessageFramer().push(big));
    expect([e.subcode, ...e.data]).toEqual([2, 0x10, 0x01]);
    // RFC 8654 §4: accepted once extended messages are negotiated.
    const f = new MessageFramer();
    f.setMaxLength(65535);
    expect(f.push(big)).toEqual([]);
    expect(f.buffered).toBe(19);
    const open = Uint8Array.from([...new Array(16).fill(0xff), 0, 28, 1]);
    expect(notification(() => new MessageFramer().push(open)).subcode).toBe(2);
    const ka = Uint8Array.from([...new Array(16).fill(0xff), 0, 20, 4, 0]);
    expect(notification(() => new MessageFramer().push(ka)).subcode).toBe(2);
  });

  it("RFC 4271 §6.1: an unknown type -> Bad Message Type with the type as data; the framer stays failed", () => {
    const m = Uint8Array.from([...new Array(16).fill(0xff), 0, 19, 9]);
    const f = new MessageFramer();
    const e = notification(() => f.push(m));
    expect([e.subcode, ...e.data]).toEqual([MessageHeaderErrorSubcode.BadMessageType, 9]);
    expect(() => f.push(encodeKeepalive())).toThrow(NotificationError);
  });

  it("detects a bad header split across chunks", () => {
    const m = Uint8Array.from([...new Array(16).fill(0xff), 0, 19, 9]);
    const f = new MessageFramer();
    expect(f.push(m.subarray(0, 10))).toEqual([]);
    expect(() => f.push(m.subarray(10))).toThrow(NotificationError);
  });
});
