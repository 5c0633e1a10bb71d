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

/** One target peer set's batch; `lastA` is its announcement of attribute set `lastAttr`. */
type Target<A> = {
  b: AdjOutBatch<A>;
  byAttr: Map<number, AdjOutAnnounce<A>>;
  lastAttr: number;
  lastA: AdjOutAnnounce<A> | undefined;
};

/** Collects one drain's Adj-RIB-Out changes of one group into batches per target peer set. */
export class GroupBuilder<A> {
  /**
   * Targets other than "every member", by a numeric key: -only for one peer, else the
   * excluded members (peer handles < 65536) as except0 * 65536 + except1, the smaller first.
   */
  private readonly batches = new Map<number, Target<A>>();
  private all: Target<A> | undefined;
  /** The last target other than "all" and its key: a reflector's routes from one client all
   *  exclude that client, so consecutive prefixes mostly share it. */
  private lastKey = 0;
  private last: Target<A> | undefined;

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
    let t: Target<A>;
    if (only === 0 && except0 === 0) {
      if (this.all === undefined) this.all = this.target([], 0);
      t = this.all;
    } else {
      const lo = except1 !== 0 && except1 < except0 ? except1 : except0;
      const hi = except1 !== 0 && except1 < except0 ? except0 : except1;
      const key = only !== 0 ? -only : lo * 65536 + hi;
      if (this.last !== undefined && this.lastKey === key) t = this.last;
      else {
        let hit = this.batches.get(key);
        if (hit === undefined) {
          hit = this.target(only !== 0 ? [] : hi === 0 ? [lo] : [lo, hi], only);
          this.batches.set(key, hit);
        }
        this.last = hit;
        this.lastKey = key;
        t = hit;
      }
    }
    if (act === ACT_WD) {
      this.rib.pushPrefix(pfx, t.b.withdraw.v4, t.b.withdraw.v6, pid);
      return;
    }
    let a = t.lastAttr === attr ? t.lastA : t.byAttr.get(attr);
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
    t.lastAttr = attr;
    t.lastA = a;
    this.rib.pushPrefix(pfx, a.v4, a.v6, pid);
  }

  private target(except: number[], only: number): Target<A> {
    const b: AdjOutBatch<A> = {
      group: this.group,
      peers: this.rib.memberIds(this.group, except, only),
      announce: [],
      withdraw: { v4: new PrefixList(4, 0), v6: new PrefixList(6, 0) },
    };
    return { b, byAttr: new Map<number, AdjOutAnnounce<A>>(), lastAttr: -1, lastA: undefined };
  }

  finish(out: AdjOutBatch<A>[]): void {
    if (this.all !== undefined) out.push(this.all.b);
    for (const t of this.batches.values()) out.push(t.b);
  }
}
