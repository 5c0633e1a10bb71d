// Test models of the kernel's iptables-restore --noflush (the subset our payloads use), shared
// by the property test of planTable() and the pure apply test; and the incremental apply tests'
// fixture (web pods and the policy over them).
import type { DataplaneInput } from "../../src/felix/dataplane.js";
import type { SavedTable } from "../../src/felix/iptables.js";
import {
  fromGlobalNetworkPolicy,
  type Policy,
  type PolicyEndpoint,
} from "../../src/felix/policy.js";

/** Pod n of app=web with a role label, on interface `<prefix><n>`. */
export function webPod(
  n: number,
  role: string,
  prefix = "ocl",
): PolicyEndpoint & { iface: string } {
  return {
    id: `default/pod-${n}`,
    namespace: "default",
    labels: { app: "web", role },
    addresses: [`10.244.1.${n}/32`],
    iface: `${prefix}${n}`,
  };
}

/** A policy on app=web allowing sources role=db and a second selector. */
export function webPolicy(second: string): Policy {
  return fromGlobalNetworkPolicy({
    metadata: { name: "web" },
    spec: {
      selector: `app == "web"`,
      types: ["Ingress"],
      ingress: [
        { action: "Allow", source: { selector: `role == "db"` } },
        { action: "Allow", source: { selector: second } },
      ],
    },
  });
}

/** The agent's input for web pods (their IPv4 address, NAT-outgoing pool 10.244/16) and policies. */
export function webInput(
  eps: readonly (PolicyEndpoint & { iface: string })[],
  policies: Policy[],
): DataplaneInput {
  return {
    workloads: eps.map((e) => ({
      id: e.id,
      hostIface: e.iface,
      ipv4: [(e.addresses[0] as string).split("/")[0] as string],
      ipv6: [],
    })),
    pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
    options: { ipv6: false },
    policy: { endpoints: [...eps], policies },
  };
}

/** A model of iptables-restore --noflush over one table (the subset our payloads use). */
export function restoreModel(table: SavedTable, payload: string): SavedTable {
  const chains = new Map(table.chains);
  let rules = [...table.rules];
  for (const line of payload.split("\n")) {
    if (line === "" || line.startsWith("*") || line === "COMMIT") continue;
    const decl = /^:(\S+) (\S+)/.exec(line);
    const add = /^-A (\S+) (.*)$/.exec(line);
    const del = /^-D (\S+) (.*)$/.exec(line);
    const ins = /^-I (\S+) (\d+) (.*)$/.exec(line);
    const drop = /^-X (\S+)$/.exec(line);
    if (decl) {
      if (chains.has(decl[1])) rules = rules.filter((r) => r.chain !== decl[1]);
      else chains.set(decl[1], decl[2]);
    } else if (add) {
      if (!chains.has(add[1])) throw new Error(`no chain ${add[1]}`);
      rules.push({ chain: add[1], spec: add[2] });
    } else if (del && /^\d+$/.test(del[2] as string)) {
      // By position (1-based) in the chain.
      const idx = rules.map((r, i) => [r, i] as const).filter(([r]) => r.chain === del[1]);
      const at = idx[Number(del[2]) - 1];
      if (at === undefined) throw new Error(`-D of a missing position: ${line}`);
      rules.splice(at[1], 1);
    } else if (del) {
      const i = rules.findIndex((r) => r.chain === del[1] && r.spec === del[2]);
      if (i < 0) throw new Error(`-D of a missing rule: ${line}`);
      rules.splice(i, 1);
    } else if (ins) {
      const [chain, pos, spec] = [ins[1], Number(ins[2]), ins[3]];
      const idx = rules.map((r, i) => [r, i] as const).filter(([r]) => r.chain === chain);
      // As the kernel: at most one past the end ("Index of insertion too big").
      if (pos < 1 || pos > idx.length + 1) throw new Error(`-I past the chain's end: ${line}`);
      const at = pos - 1 < idx.length ? idx[pos - 1][1] : rules.length;
      rules.splice(at, 0, { chain, spec });
    } else if (drop) {
      const name = drop[1];
      if (rules.some((r) => r.chain === name || r.spec.endsWith(`-j ${name}`)))
        throw new Error(`-X of a non-empty or referenced chain ${name}`);
      chains.delete(name);
    } else {
      throw new Error(`model does not know: ${line}`);
    }
  }
  return { table: table.table, chains, rules };
}

const BUILTINS: Record<string, string[]> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
};

/**
 * A fake kernel behind the apply Runner: sysctls, links, ipsets and iptables tables held in
 * memory, answering the commands apply.ts runs; every write command is logged.
 */
export class FakeKernel {
  readonly sysctls = new Map<string, string>();
  readonly links = new Map<string, { address: string; up: boolean }>();
  /** Each link's own addresses ("169.254.0.179/32"), as `ip addr` adds them. */
  readonly addrs = new Map<string, string[]>();
  readonly ipsets = new Map<string, { type: string; family: string; members: string[] }>();
  readonly tables = { 4: new Map<string, SavedTable>(), 6: new Map<string, SavedTable>() };
  readonly writes: string[] = [];
  /** Every command run, reads included. */
  readonly commands: string[] = [];
  /** The next command matching each fails (exit 1); each is used once. */
  readonly failNext: RegExp[] = [];

  addLink(name: string): void {
    this.links.set(name, { address: "02:00:00:00:00:01", up: false });
    for (const k of ["forwarding", "rp_filter", "route_localnet", "proxy_arp"])
      this.sysctls.set(`net.ipv4.conf.${name}.${k}`, "0");
    this.sysctls.set(`net.ipv4.neigh.${name}.proxy_delay`, "80");
  }

  private addrInfo(name: string) {
    return (this.addrs.get(name) ?? []).map((a) => {
      const [local, len] = a.split("/");
      return { family: local?.includes(":") ? "inet6" : "inet", local, prefixlen: Number(len) };
    });
  }

  run = async (_netns: string | undefined, cmd: string, args: string[], input?: string) => {
    const ok = (stdout = "") => ({ code: 0, stdout, stderr: "" });
    const line = `${cmd} ${args.join(" ")}`;
    this.commands.push(line);
    const fail = this.failNext.findIndex((re) => re.test(line));
    if (fail >= 0) {
      this.failNext.splice(fail, 1);
      return { code: 1, stdout: "", stderr: "injected failure" };
    }
    if (cmd === "sysctl" && args[0] === "-e") {
      const keys = args.slice(1).filter((k) => this.sysctls.has(k));
      return ok(keys.map((k) => `${k} = ${this.sysctls.get(k)}\n`).join(""));
    }
    if (cmd === "sysctl" && args[0] === "-qw") {
      this.writes.push(line);
      for (const kv of args.slice(1)) {
        const [k, v] = kv.split("=");
        if (!this.sysctls.has(k) && !k.startsWith("net.ipv")) throw new Error(`no sysctl ${k}`);
        this.sysctls.set(k, v);
      }
      return ok();
    }
    if (cmd === "ip" && args.join(" ") === "-j link show") {
      const list = [...this.links].map(([ifname, l]) => ({
        ifname,
        address: l.address,
        flags: l.up ? ["BROADCAST", "UP"] : ["BROADCAST"],
      }));
      return ok(JSON.stringify(list));
    }
    if (cmd === "ip" && args.slice(0, 4).join(" ") === "-j link show dev") {
      const l = this.links.get(args[4] as string);
      if (!l) return { code: 1, stdout: "", stderr: `Device "${args[4]}" does not exist.` };
      const flags = l.up ? ["BROADCAST", "UP"] : ["BROADCAST"];
      return ok(JSON.stringify([{ ifname: args[4], address: l.address, flags }]));
    }
    if (cmd === "ip" && args.join(" ") === "-d -j addr show") {
      // The overlay's read-back: these workload links are no tunnel devices of ours.
      return ok(JSON.stringify([...this.links.keys()].map((ifname) => ({ ifname }))));
    }
    if (cmd === "ip" && args.slice(0, 4).join(" ") === "-j addr show dev") {
      // `ip -j addr show dev X`: one link's addresses.
      const name = args[4] as string;
      if (!this.links.has(name))
        return { code: 1, stdout: "", stderr: `Device "${name}" does not exist.` };
      return ok(JSON.stringify([{ ifname: name, addr_info: this.addrInfo(name) }]));
    }
    if (cmd === "ip" && args.join(" ") === "-j addr show") {
      const list = [...this.links.keys()].map((ifname) => ({
        ifname,
        addr_info: this.addrInfo(ifname),
      }));
      return ok(JSON.stringify(list));
    }
    if (cmd === "ip" && args[0] === "addr" && (args[1] === "add" || args[1] === "del")) {
      this.writes.push(line);
      const [a, name] = [args[2] as string, args[4] as string];
      const have = this.addrs.get(name) ?? [];
      if (args[1] === "add") {
        if (have.includes(a))
          return { code: 2, stdout: "", stderr: "RTNETLINK answers: File exists" };
        this.addrs.set(name, [...have, a]);
      } else {
        if (!have.includes(a))
          return {
            code: 2,
            stdout: "",
            stderr: "RTNETLINK answers: Cannot assign requested address",
          };
        this.addrs.set(
          name,
          have.filter((x) => x !== a),
        );
      }
      return ok();
    }
    if (cmd === "ip" && args[0] === "link" && args[1] === "set") {
      this.writes.push(line);
      const l = this.links.get(args[3]);
      if (!l) return { code: 1, stdout: "", stderr: `Cannot find device "${args[3]}"` };
      if (args[4] === "address") l.address = args[5];
      if (args[4] === "up") l.up = true;
      return ok();
    }
    if (cmd === "tc" && args.join(" ") === "-j qdisc show") return ok("[]"); // no qdiscs of ours
    if (cmd === "ipset" && args[0] === "save") {
      const out: string[] = [];
      for (const [name, s] of this.ipsets) {
        out.push(`create ${name} ${s.type} family ${s.family} hashsize 1024 maxelem 65536`);
        // The kernel prints host entries of hash:net without /32.
        for (const m of s.members) out.push(`add ${name} ${m.replace(/\/32$/, "")}`);
      }
      return ok(out.map((l) => `${l}\n`).join(""));
    }
    if (cmd === "ipset" && args[0] === "destroy") {
      this.writes.push(line);
      return this.ipsets.delete(args[1]) ? ok() : { code: 1, stdout: "", stderr: "no such set" };
    }
    if (cmd === "ipset" && args[0] === "restore") {
      this.writes.push(line);
      this.ipsetRestore(input ?? "");
      return ok();
    }
    const ipt = /^(ip6?)tables-nft-(save|restore)$/.exec(cmd);
    if (ipt) {
      const tables = this.tables[ipt[1] === "ip" ? 4 : 6];
      if (ipt[2] === "save") return ok(saveText(tables));
      this.writes.push(line);
      for (const block of (input ?? "").split(/^COMMIT$/m)) {
        const name = /^\*(\S+)/m.exec(block)?.[1];
        if (!name) continue;
        const cur = tables.get(name) ?? {
          table: name,
          chains: new Map((BUILTINS[name] ?? []).map((b) => [b, "ACCEPT"])),
          rules: [],
        };
        tables.set(name, restoreModel(cur, `${block}\nCOMMIT`));
      }
      return ok();
    }
    throw new Error(`FakeKernel does not know: ${line}`);
  };

  private ipsetRestore(payload: string): void {
    for (const l of payload.split("\n").filter(Boolean)) {
      const [op, name, ...rest] = l.split(" ");
      const set = this.ipsets.get(name);
      if (op === "create") {
        if (!set) this.ipsets.set(name, { type: rest[0], family: rest[2], members: [] });
      } else if (op === "flush" && set) set.members = [];
      else if (op === "add" && set) {
        // -exist: adding a member already there is no error.
        if (!set.members.includes(rest[0])) set.members.push(rest[0]);
      } else if (op === "del" && set) set.members = set.members.filter((m) => m !== rest[0]);
      else if (op === "swap" && set) {
        const other = this.ipsets.get(rest[0]);
        if (!other) throw new Error(`swap with missing set ${rest[0]}`);
        this.ipsets.set(rest[0], set);
        this.ipsets.set(name, other);
      } else if (op === "destroy") this.ipsets.delete(name);
      else throw new Error(`ipset restore: bad line ${l}`);
    }
  }
}

function saveText(tables: Map<string, SavedTable>): string {
  const out: string[] = ["# Generated by the fake kernel"];
  for (const t of tables.values()) {
    out.push(`*${t.table}`);
    for (const [c, p] of t.chains) out.push(`:${c} ${p} [0:0]`);
    for (const r of t.rules) out.push(`-A ${r.chain} ${r.spec}`);
    out.push("COMMIT");
  }
  return `${out.join("\n")}\n`;
}
