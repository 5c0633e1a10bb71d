// Translates libcalico-go's validator test table (lib/validator/v3/validator_test.go, fetched
// by the user; never committed) into whole resources with Calico's verdict:
// test/fixtures/calico-validator/table.yaml, which test/api/calico_validator.test.ts runs. Each
// Entry's Go composite literal becomes YAML (field names as their JSON tags, Calico's constants
// as their values); a bare spec, rule or field struct is wrapped in the resource that carries
// it. Entries whose value this translator cannot read (helpers, computed values) are counted
// and left out.
//
// Usage: npx tsx scripts/calico_validator_table.ts <validator_test.go>
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { stringify } from "yaml";

type Tok = { t: "id" | "str" | "num" | "p"; v: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  const re =
    /\s+|\/\/[^\n]*|"((?:[^"\\]|\\.)*)"|`([^`]*)`|(0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:e\d+)?)|([A-Za-z_][A-Za-z0-9_.]*)|(\[\]|[{}()[\],:&*\-+])/gy;
  re.lastIndex = 0;
  while (re.lastIndex < src.length) {
    const m = re.exec(src);
    if (m === null) break;
    if (m[1] !== undefined) out.push({ t: "str", v: JSON.parse(`"${m[1]}"`) });
    else if (m[2] !== undefined) out.push({ t: "str", v: m[2] });
    else if (m[3] !== undefined) out.push({ t: "num", v: m[3] });
    else if (m[4] !== undefined) out.push({ t: "id", v: m[4] });
    else if (m[5] !== undefined) out.push({ t: "p", v: m[5] });
  }
  return out;
}

class Untranslatable extends Error {}

const CONSTANTS: Record<string, unknown> = {
  true: true,
  false: false,
  "api.Allow": "Allow",
  "api.Deny": "Deny",
  "api.Log": "Log",
  "api.Pass": "Pass",
  "api.PolicyTypeIngress": "Ingress",
  "api.PolicyTypeEgress": "Egress",
  "api.StagedActionSet": "Set",
  "api.StagedActionDelete": "Delete",
  "api.IPIPModeNever": "Never",
  "api.IPIPModeAlways": "Always",
  "api.IPIPModeCrossSubnet": "CrossSubnet",
  "api.VXLANModeNever": "Never",
  "api.VXLANModeAlways": "Always",
  "api.VXLANModeCrossSubnet": "CrossSubnet",
  "api.IPPoolAllowedUseTunnel": "Tunnel",
  "api.IPPoolAllowedUseWorkload": "Workload",
  "api.IPPoolAllowedUseLoadBalancer": "LoadBalancer",
  "api.PerfHintAssumeNeededOnEveryNode": "AssumeNeededOnEveryNode",
  "api.SourceAddressUseNodeIP": "UseNodeIP",
  "api.SourceAddressNone": "None",
  "api.DefaultTierOrder": 1000000,
  "api.KubeAdminTierOrder": 1000,
  "api.KubeBaselineTierOrder": 10000000,
  "api.Automatic": "Automatic",
  "api.Manual": "Manual",
  "api.Equal": "Equal",
  "api.NotEqual": "NotEqual",
  "api.In": "In",
  "api.NotIn": "NotIn",
  "api.Accept": "Accept",
  "api.Reject": "Reject",
  "api.BGPFilterActionAccept": "Accept",
  "api.BGPFilterActionReject": "Reject",
  "api.MatchOperatorEqual": "Equal",
  "api.MatchOperatorNotEqual": "NotEqual",
  "api.MatchOperatorIn": "In",
  "api.MatchOperatorNotIn": "NotIn",
  "api.BGPFilterSourceRemotePeers": "RemotePeers",
  "api.BGPFilterPeerTypeEBGP": "eBGP",
  "api.BGPFilterPeerTypeIBGP": "iBGP",
};

/** The simple variables of the test file's init(): `name := <literal or known call>`. */
function readVars(src: string, parseValue: (toks: Tok[]) => unknown): Map<string, unknown> {
  const vars = new Map<string, unknown>();
  for (const m of src.matchAll(/^\s*([a-zA-Z0-9_]+)(?:, _)? :?= (.+)$/gm)) {
    try {
      vars.set(m[1] as string, parseValue(tokenize(m[2] as string)));
    } catch {
      // not a simple value
    }
  }
  return vars;
}

/** Go field name -> its JSON tag as Calico spells them (PeerIP -> peerIP, ASNumber -> asNumber). */
function jsonName(go: string): string {
  const special: Record<string, string> = {
    ObjectMeta: "metadata",
    IPIPMode: "ipipMode",
    VXLANMode: "vxlanMode",
    NATOutgoing: "natOutgoing",
    DisableBGPExport: "disableBGPExport",
    ICMP: "icmp",
    NotICMP: "notICMP",
    HTTP: "http",
    BGP: "bgp",
    IPv4Address: "ipv4Address",
    IPv6Address: "ipv6Address",
    IPv4IPIPTunnelAddr: "ipv4IPIPTunnelAddr",
    IPv4VXLANTunnelAddr: "ipv4VXLANTunnelAddr",
    IPv6VXLANTunnelAddr: "ipv6VXLANTunnelAddr",
    IPNetworks: "ipNetworks",
    IPNATs: "ipNATs",
    IPv4Gateway: "ipv4Gateway",
    IPv6Gateway: "ipv6Gateway",
    MAC: "mac",
    CIDR: "cidr",
    ASPathPrefix: "asPathPrefix",
    ASNumber: "asNumber",
    LocalASNumber: "localASNumber",
    PeerIP: "peerIP",
    TTLSecurity: "ttlSecurity",
    ExportV4: "exportV4",
    ImportV4: "importV4",
    ExportV6: "exportV6",
    ImportV6: "importV6",
    IPVersion: "ipVersion",
    IP: "ip",
    ServiceClusterIPs: "serviceClusterIPs",
    ServiceExternalIPs: "serviceExternalIPs",
    ServiceLoadBalancerIPs: "serviceLoadBalancerIPs",
    LocalWorkloadPeeringIPV4: "localWorkloadPeeringIPV4",
    LocalWorkloadPeeringIPV6: "localWorkloadPeeringIPV6",
    NodeToNodeMeshEnabled: "nodeToNodeMeshEnabled",
    PrependASPath: "prependASPath",
    RouteReflectorClusterID: "routeReflectorClusterID",
    ContainerID: "containerID",
    HostIP: "hostIP",
    ExternalNodesCIDRList: "externalNodesList",
  };
  if (special[go] !== undefined) return special[go] as string;
  // A leading acronym is lowercased whole (BPFLogLevel -> bpfLogLevel, NATOutgoing... ->
  // natOutgoing...), as Calico's JSON tags spell them.
  const m = /^([A-Z]+)([A-Z][a-z].*)$/.exec(go);
  if (m !== null) return (m[1] as string).toLowerCase() + m[2];
  if (/^[A-Z0-9]+$/.test(go)) return go.toLowerCase();
  return go.charAt(0).toLowerCase() + go.slice(1);
}

class Parser {
  i = 0;
  constructor(
    readonly toks: Tok[],
    readonly vars: Map<string, unknown>,
  ) {}
  peek(o = 0): Tok | undefined {
    return this.toks[this.i + o];
  }
  next(): Tok {
    const t = this.toks[this.i++];
    if (t === undefined) throw new Untranslatable("end of input");
    return t;
  }
  expect(v: string) {
    const t = this.next();
    if (t.v !== v) throw new Untranslatable(`expected ${v}, got ${t.v}`);
  }
  /** A type name after `[]` or before `{`: ident, `*ident`, `map[string]string`, `[]T`. */
  typeName(): string {
    let name = "";
    while (this.peek()?.v === "*" || this.peek()?.v === "[]") name += this.next().v;
    const t = this.next();
    if (t.v === "map") {
      this.expect("[");
      this.typeName();
      this.expect("]");
      return `map[]${this.typeName()}`;
    }
    return name + t.v;
  }
  value(): unknown {
    const t = this.peek();
    if (t === undefined) throw new Untranslatable("no value");
    if (t.v === "&" || t.v === "*") {
      this.next();
      return this.value();
    }
    if (t.v === "-" && this.peek(1)?.t === "num") {
      this.next();
      return -Number(this.next().v);
    }
    if (t.t === "str") {
      this.next();
      return t.v;
    }
    if (t.t === "num") {
      this.next();
      return Number(t.v);
    }
    if (t.v === "[]") {
      this.next();
      return this.composite(true, this.typeName());
    }
    if (t.t === "id") {
      this.next();
      if (t.v === "map" && this.peek()?.v === "[") {
        this.expect("[");
        this.typeName();
        this.expect("]");
        this.typeName();
        return this.composite(false);
      }
      if (this.peek()?.v === "{") {
        const v = this.composite(false) as Record<string, unknown>;
        return this.typed(t.v, v);
      }
      if (this.peek()?.v === "(") return this.call(t.v);
      if (t.v === "nil") return undefined;
      if (t.v in CONSTANTS) return CONSTANTS[t.v];
      if (this.vars.has(t.v)) return this.vars.get(t.v);
      throw new Untranslatable(`unknown name ${t.v}`);
    }
    throw new Untranslatable(`unexpected ${t.v}`);
  }
  /** Calico's value types whose JSON form is not their struct: ports, durations. */
  typed(type: string, v: Record<string, unknown>): unknown {
    if (type === "numorstring.Port") {
      // A name with numbers too has no JSON form Calico would accept: kept as the struct.
      if (v.portName !== undefined) return v.minPort || v.maxPort ? v : v.portName;
      const min = v.minPort ?? 0;
      const max = v.maxPort ?? 0;
      return min === max ? min : `${min}:${max}`;
    }
    if (type.endsWith("Duration")) throw new Untranslatable("duration value");
    // An embedded struct (LocalObjectReference inside SecretKeySelector) flattens into its parent.
    for (const [k, x] of Object.entries(v))
      if (k === "localObjectReference" && typeof x === "object" && x !== null) {
        delete v[k];
        Object.assign(v, x);
      }
    return v;
  }
  call(fn: string): unknown {
    this.expect("(");
    const args: unknown[] = [];
    while (this.peek()?.v !== ")") {
      args.push(this.value());
      if (this.peek()?.v === ",") this.next();
    }
    this.expect(")");
    const base = fn.split(".").pop() as string;
    switch (base) {
      case "ProtocolFromString":
      case "protocolFromString":
      case "ProtocolFromInt":
      case "protocolFromInt":
      case "SinglePort":
      case "NamedPort":
      case "ASNumberFromString":
      case "To":
      case "float64":
      case "int":
      case "uint32":
      case "int32":
        return base === "ASNumberFromString" ? Number(args[0]) : args[0];
      case "PortFromRange":
        return `${args[0]}:${args[1]}`;
    }
    // A conversion to one of Calico's string types: api.NextHopMode("Auto").
    if (/^api\.[A-Z]/.test(fn) && args.length === 1 && typeof args[0] === "string") return args[0];
    throw new Untranslatable(`call ${fn}`);
  }
  composite(list: boolean, elemType = ""): unknown {
    this.expect("{");
    const arr: unknown[] = [];
    const obj: Record<string, unknown> = {};
    let isMap = false;
    while (this.peek()?.v !== "}") {
      const a = this.peek();
      const b = this.peek(1);
      if (!list && a?.t === "id" && b?.v === ":") {
        this.next();
        this.next();
        const v = this.value();
        if (v !== undefined) obj[jsonName(a.v)] = v;
      } else if (!list && a?.t === "str" && b?.v === ":") {
        isMap = true;
        this.next();
        this.next();
        obj[a.v] = this.value();
      } else if (list) {
        if (this.peek()?.v === "{")
          arr.push(this.typed(elemType, this.composite(false) as Record<string, unknown>));
        else arr.push(this.value());
      } else throw new Untranslatable("positional struct fields");
      if (this.peek()?.v === ",") this.next();
    }
    this.expect("}");
    void isMap;
    if (list) return arr;
    // Embedded metav1.ObjectMeta / TypeMeta flatten into metadata.
    return obj;
  }
}

const V3 = "projectcalico.org/v3";
const spec = (kind: string, name: string, s: unknown, namespaced = false) => ({
  apiVersion: V3,
  kind,
  metadata: namespaced ? { name, namespace: "default" } : { name },
  spec: s,
});

/** The resource that carries a value of Go type `type`; undefined when not one we translate. */
function wrap(type: string, v: Record<string, unknown>): unknown {
  const t = type.replace(/^[&*]+/, "");
  const res =
    /^api\.(NetworkPolicy|GlobalNetworkPolicy|StagedNetworkPolicy|StagedGlobalNetworkPolicy|Tier|IPPool|BGPPeer|BGPFilter|BGPConfiguration|NetworkSet|GlobalNetworkSet|HostEndpoint|Profile|FelixConfiguration|IPReservation|KubeControllersConfiguration|IPAMConfiguration)$/.exec(
      t,
    );
  if (res) {
    const meta = (v.metadata ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = { apiVersion: V3, kind: res[1], metadata: meta };
    if (v.spec !== undefined) out.spec = v.spec;
    return out;
  }
  switch (t) {
    case "api.BGPPeerSpec":
      return spec("BGPPeer", "test", v);
    case "api.BGPConfigurationSpec":
      return spec("BGPConfiguration", "default", v);
    case "api.FelixConfigurationSpec":
      return spec("FelixConfiguration", "default", v);
    case "api.IPPoolSpec":
      return spec("IPPool", "pool", v);
    case "api.ProfileSpec":
      return spec("Profile", "prof", v);
    case "api.BGPFilterRuleV4":
      return spec("BGPFilter", "f", { exportV4: [v] });
    case "api.BGPFilterRuleV6":
      return spec("BGPFilter", "f", { exportV6: [v] });
    case "api.Rule":
      return spec("GlobalNetworkPolicy", "p", { ingress: [v] });
    case "api.EntityRule":
      return spec("GlobalNetworkPolicy", "p", {
        ingress: [
          { action: "Allow", ...(v.ports || v.notPorts ? { protocol: "TCP" } : {}), source: v },
        ],
      });
    case "api.ICMPFields":
      return spec("GlobalNetworkPolicy", "p", {
        ingress: [{ action: "Allow", protocol: "ICMP", icmp: v }],
      });
    case "internalapi.NodeSpec":
      return spec("Node", "node1", v);
    case "internalapi.WorkloadEndpointSpec":
      return spec("WorkloadEndpoint", "w", v, true);
    case "internalapi.WorkloadEndpointPort":
      return spec("WorkloadEndpoint", "w", { interfaceName: "eth0", ports: [v] }, true);
    case "api.NetworkPolicySpec":
      return spec("NetworkPolicy", "p", v, true);
    case "api.GlobalNetworkPolicySpec":
      return spec("GlobalNetworkPolicy", "p", v);
    case "api.GlobalNetworkSetSpec":
      return spec("GlobalNetworkSet", "s", v);
    case "api.NetworkSetSpec":
      return spec("NetworkSet", "s", v, true);
    case "api.HostEndpointSpec":
      return spec("HostEndpoint", "h", v);
  }
  return undefined;
}

/** Each `Entry("name", value, true|false)` of the file, with its source text. */
function entries(src: string): { name: string; body: string; verdict?: boolean }[] {
  const out: { name: string; body: string; verdict?: boolean }[] = [];
  let at = 0;
  for (;;) {
    const j = src.indexOf('Entry("', at);
    if (j < 0) break;
    let depth = 0;
    let k = j + 5;
    for (; k < src.length; k++) {
      const c = src[k];
      if (c === '"') {
        k++;
        while (src[k] !== '"') k += src[k] === "\\" ? 2 : 1;
      } else if (c === "`") k = src.indexOf("`", k + 1);
      else if (c === "(") depth++;
      else if (c === ")" && --depth === 0) break;
    }
    const body = src.slice(j + 6, k);
    const name = JSON.parse(/^"((?:[^"\\]|\\.)*)"/.exec(body)?.[0] ?? '""') as string;
    const v = /,\s*(true|false)\s*,?\s*$/.exec(body);
    out.push({ name, body, ...(v ? { verdict: v[1] === "true" } : {}) });
    at = k;
  }
  return out;
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write("usage: calico_validator_table.ts <validator_test.go>\n");
  process.exit(2);
}
const src = readFileSync(file, "utf8");
const vars = readVars(src.slice(0, src.indexOf("DescribeTable")), (toks) =>
  new Parser(toks, new Map()).value(),
);
const cases: { name: string; calico: "accept" | "refuse"; doc: unknown }[] = [];
const skipped = new Map<string, number>();
for (const e of entries(src)) {
  if (e.verdict === undefined) continue;
  const toks = tokenize(e.body);
  const p = new Parser(toks, vars);
  try {
    p.next(); // the name
    p.expect(",");
    const start = p.i;
    while (p.peek()?.v === "&" || p.peek()?.v === "*") p.next();
    const typeTok = p.next();
    p.i = start;
    const value = p.value() as Record<string, unknown>;
    const doc = wrap(typeTok.v, value);
    if (doc === undefined) throw new Untranslatable(`type ${typeTok.v}`);
    cases.push({ name: e.name, calico: e.verdict ? "accept" : "refuse", doc });
  } catch (err) {
    if (!(err instanceof Untranslatable)) throw err;
    const why = err.message.replace(/ [^ ]+$/, "");
    skipped.set(why, (skipped.get(why) ?? 0) + 1);
  }
}
mkdirSync("test/fixtures/calico-validator", { recursive: true });
writeFileSync(
  "test/fixtures/calico-validator/table.yaml",
  `# Generated by scripts/calico_validator_table.ts from libcalico-go's validator_test.go: each
# Entry's value as the resource that carries it, with Calico's verdict. Do not edit by hand.
${stringify(cases, { lineWidth: 0 })}`,
);
process.stdout.write(
  `${cases.length} cases written; left out: ${[...skipped].map(([w, n]) => `${n} (${w})`).join(", ")}\n`,
);
