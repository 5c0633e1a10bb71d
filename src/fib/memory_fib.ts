// An in-memory Fib with the same interface and validation as KernelFib, for the pure tests of
// the speaker and the agent. Owns: a map of desired routes and a log of applied operations.
// Not: any kernel access; errors can be injected per destination to exercise failure paths.
import { formatIPv4 } from "../lib/ip.js";
import { parseCidr } from "./rtnetlink.js";
import {
  type BatchFib,
  FibError,
  type FibFailure,
  type Route,
  RT_TABLE_MAIN,
  RTPROT_OCELOT_AGENT,
  RTPROT_OCELOT_BGP,
  routeKey,
  type V4Batch,
} from "./types.js";

export interface MemoryFibOp {
  op: "set" | "remove";
  route: string;
}

export class MemoryFib implements BatchFib {
  readonly protocols: Set<number>;
  private readonly routes = new Map<string, Route>();
  /** Every applied operation, in order (for assertions). */
  readonly log: MemoryFibOp[] = [];
  /** Destinations ("10.0.0.0/24") whose set() fails with this errno code, e.g. ENETUNREACH. */
  readonly failOn = new Map<string, string>();
  private closed = false;

  constructor(protocols: number[] = [RTPROT_OCELOT_BGP, RTPROT_OCELOT_AGENT]) {
    this.protocols = new Set(protocols);
  }

  async set(routes: Route[]): Promise<void> {
    this.checkOpen();
    const failures: FibFailure[] = [];
    for (const r of routes) {
      this.validate(r);
      const fail = this.failOn.get(r.dst);
      if (fail) {
        failures.push({ route: describe(r), op: "set", errno: 0, code: fail });
        continue;
      }
      const copy = structuredClone(r);
      if (copy.family === 6 && !copy.metric) copy.metric = 1024; // as the kernel does
      this.routes.set(routeKey(copy), copy);
      this.log.push({ op: "set", route: describe(copy) });
    }
    if (failures.length) throw new FibError(failures);
  }

  async remove(
    routes: Pick<Route, "family" | "dst" | "table" | "metric" | "protocol">[],
  ): Promise<void> {
    this.checkOpen();
    for (const r of routes) {
      this.checkProtocol(r.protocol);
      parseCidr(r.family, r.dst);
      const key = routeKey({ ...r, metric: r.family === 6 && !r.metric ? 1024 : r.metric });
      if (this.routes.delete(key)) this.log.push({ op: "remove", route: describe(r) });
    }
  }

  setV4Batch(b: V4Batch): Promise<void> {
    const n = b.count ?? b.addrs.length;
    const routes: Route[] = [];
    for (let i = 0; i < n; i++) {
      routes.push({
        family: 4,
        dst: `${formatIPv4(b.addrs[i])}/${b.lens[i]}`,
        table: b.table,
        protocol: b.protocol,
        type: b.type,
        scope: b.scope,
        metric: b.metric,
        nexthops: b.nexthops,
        src: b.src,
      });
    }
    return this.set(routes);
  }

  removeV4Batch(
    b: Pick<V4Batch, "addrs" | "lens" | "count" | "table" | "metric" | "protocol">,
  ): Promise<void> {
    const n = b.count ?? b.addrs.length;
    const routes = [];
    for (let i = 0; i < n; i++) {
      routes.push({
        family: 4 as const,
        dst: `${formatIPv4(b.addrs[i])}/${b.lens[i]}`,
        table: b.table,
        metric: b.metric,
        protocol: b.protocol,
      });
    }
    return this.remove(routes);
  }

  desired(): Route[] {
    return [...this.routes.values()].map((r) => structuredClone(r));
  }

  /** The desired route with this identity, if any. */
  get(r: Pick<Route, "family" | "dst" | "table" | "metric">): Route | undefined {
    return this.routes.get(
      routeKey({ ...r, metric: r.family === 6 && !r.metric ? 1024 : r.metric }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error("FIB closed");
  }

  private checkProtocol(p: number): void {
    if (!this.protocols.has(p))
      throw new Error(
        `Route protocol ${p} is not owned by this FIB (owns ${[...this.protocols].join(", ")})`,
      );
  }

  /** The same checks KernelFib makes before anything reaches the kernel. */
  private validate(r: Route): void {
    this.checkProtocol(r.protocol);
    parseCidr(r.family, r.dst);
    const type = r.type ?? "unicast";
    if (!["unicast", "blackhole", "unreachable", "prohibit"].includes(type))
      throw new Error(`Unknown route type "${type}"`);
    if (type === "unicast" && r.nexthops.length === 0)
      throw new Error("Unicast route needs at least one next hop");
    for (const h of r.nexthops) {
      if (h.weight !== undefined && (h.weight < 1 || h.weight > 256))
        throw new Error(`Next-hop weight out of range 1..256: ${h.weight}`);
    }
  }
}

function describe(r: Pick<Route, "dst" | "table" | "metric">): string {
  return `${r.dst} table ${r.table ?? RT_TABLE_MAIN} metric ${r.metric ?? 0}`;
}
