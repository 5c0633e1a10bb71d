// Adj-RIB-Out change batching: for one update group and one drain, the announcements per
// attribute set and the withdrawals, split by which members they go to (all, all but the peer a
// route came from, or one peer). Not: deciding what a group gets (rib.ts does that).
import type { PrefixList as PrefixListT } from "./prefix.js";
import { PrefixList } from "./prefix.js";
import type { AdjOutAnnounce, AdjOutBatch } from "./rib.js";

export const ACT_NONE = 0;
export const ACT_ANN = 1;
export const ACT_WD = 2;

/** What the builder needs from the RIB. */
export interface GroupBuilderHost<A> {
  memberIds(group: number, except: number[], only?: number): string[];
  attrsOf(id: number): A;
  /** Appends the prefix (and its ADD-PATH id when `pid` >= 0) to the list of its family. */
  pushPrefix(pfx: number, v4: PrefixListT, v6: PrefixListT, pid?: number): void;
}

/** The Adj-RIB-Out action for member s, given the old and new (attribute, excluded member). */
export function specialAct(
  s: number,
  oldOut: number,
  oldExc: number,
  newOut: number,
  newExc: number,
): number {
  const had = oldOut !== -1 && s !== oldExc;
  const has = newOut !== -1 && s !== newExc;
  if (has) return !had || newOut !== oldOut ? ACT_ANN : ACT_NONE;
  return had ? ACT_WD : ACT_NONE;
}

/** Collects one drain's Adj-RIB-Out changes of one group into batches per target peer set. */
export class GroupBuilder<A> {
  private readonly batches = new Map<
    string,
    { b: AdjOutBatch<A>; byAttr: Map<number, AdjOutAnnounce<A>> }
  >();
  private all: { b: AdjOutBatch<A>; byAttr: Map<number, AdjOutAnnounce<A>> } | undefined;

  constructor(
    private readonly group: number,
    private readonly rib: GroupBuilderHost<A>,
  ) {}

  add(
    act: number,
    attr: number,
    only: number,
    except0: number,
    except1: number,
    pfx: number,
    pid = -1,
  ): void {
    let t: { b: AdjOutBatch<A>; byAttr: Map<number, AdjOutAnnounce<A>> };
    if (only === 0 && except0 === 0) {
      if (this.all === undefined) this.all = this.target([], 0);
      t = this.all;
    } else {
      const except = except1 === 0 ? [except0] : [except0, except1].sort((x, y) => x - y);
      const key = only !== 0 ? `o${only}` : `x${except.join(",")}`;
      let hit = this.batches.get(key);
      if (hit === undefined) {
        hit = this.target(only !== 0 ? [] : except, only);
        this.batches.set(key, hit);
      }
      t = hit;
    }
    if (act === ACT_WD) {
      this.rib.pushPrefix(pfx, t.b.withdraw.v4, t.b.withdraw.v6, pid);
      return;
    }
    let a = t.byAttr.get(attr);
    if (a === undefined) {
      a = {
        attrId: attr,
        attrs: this.rib.attrsOf(attr),
        v4: new PrefixList(4, 0),
        v6: new PrefixList(6, 0),
      };
      t.byAttr.set(attr, a);
      t.b.announce.push(a);
    }
    this.rib.pushPrefix(pfx, a.v4, a.v6, pid);
  }

  private target(except: number[], only: number) {
    const b: AdjOutBatch<A> = {
      group: this.group,
      peers: this.rib.memberIds(this.group, except, only),
      announce: [],
      withdraw: { v4: new PrefixList(4, 0), v6: new PrefixList(6, 0) },
    };
    return { b, byAttr: new Map<number, AdjOutAnnounce<A>>() };
  }

  finish(out: AdjOutBatch<A>[]): void {
    if (this.all !== undefined) out.push(this.all.b);
    for (const t of this.batches.values()) out.push(t.b);
  }
}
