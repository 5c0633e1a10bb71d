// A block version drafted from another and then encoded must not keep that other version alive
// (encodeBlock's link to it was a WeakMap entry keyed by the new version: a cached block held
// every earlier version of itself, ~2 KB each, and each outlived the young generation).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { type Block, BlockDraft, encodeBlock, newBlock } from "../../src/ipam/block.js";
import { parseCidr } from "../../src/lib/ip.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Drafts `versions` assignments one after another, encoding each as the store does. */
function fill(versions: number): { first: WeakRef<Block>; last: Block } {
  let b = newBlock(parseCidr("10.9.0.0/26"), "host:n1", null);
  let first: WeakRef<Block> | undefined;
  for (let i = 0; i < versions; i++) {
    const d = new BlockDraft(b);
    d.assign(1, { handleId: `pod-${i}`, secondary: { node: "n1" } });
    b = d.finish();
    encodeBlock(b);
    first ??= new WeakRef(b);
  }
  return { first: first as WeakRef<Block>, last: b };
}

describe("block versions", () => {
  it("an encoded drafted version does not keep the versions before it alive", async () => {
    const { first, last } = fill(10);
    // WeakRef targets stay alive until the current job ends.
    await new Promise((r) => setTimeout(r, 0));
    gc();
    expect(first.deref()).toBeUndefined();
    // The last version is still in use and still encodes by extending (same text as a fresh one).
    expect(encodeBlock(last)).toContain('"sequenceNumber":10');
  });
});
