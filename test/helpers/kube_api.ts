// A small Kubernetes API server for tests (no real kube-apiserver can run here): node:https with
// a throw-away self-signed certificate (openssl) and a bearer token, as a kubeconfig has them
// (the client refuses plain http unless TLS checks are off), serving core/v1 Pods, Namespaces,
// ServiceAccounts, Nodes and Services, networking.k8s.io/v1 NetworkPolicies and
// discovery.k8s.io/v1 EndpointSlices with the API's documented
// read semantics, for the real `@kubernetes/client-node` to drive:
// - GET of one object (/api/v1/namespaces/{ns}/pods/{name}, /api/v1/namespaces/{name},
//   /api/v1/nodes/{name}, /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}, …):
//   the object or a 404 Status;
// - lists (/api/v1/pods, /api/v1/namespaces/{ns}/pods, /api/v1/namespaces, and the same for the
//   other kinds) with
//   metadata.resourceVersion, `limit` and `continue` (every page from the snapshot of the first,
//   replayed from the event history; a token older than the compaction floor: 410 Expired);
// - `?watch=true&resourceVersion=N`: JSON lines of {type, object} for every change after N
//   (none or "0": ADDED for the current objects first), `allowWatchBookmarks=true`: BOOKMARK
//   events, `timeoutSeconds`; N older than the compaction floor: one ERROR event carrying a 410
//   Expired Status, then the stream ends (what kube-apiserver does).
// Test controls: put/delete objects, compact(), breakWatches() (destroys open streams),
// bookmark(), failWith (answers every request with that HTTP status).
// Not served: label/field selectors, writes through HTTP, other kinds, authentication.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSync } from "./limits.js";

export const KUBE_TOKEN = "ocelot-test-token";

/** A self-signed certificate for 127.0.0.1 and `ips` (openssl, a temporary directory removed after). */
function selfSigned(ips: readonly string[] = []): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-kube-tls-"));
  try {
    const r = runSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      `subjectAltName=${["127.0.0.1", ...ips].map((ip) => `IP:${ip}`).join(",")}`,
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ]);
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return {
      key: readFileSync(join(dir, "key.pem"), "utf8"),
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export type Kind =
  | "Pod"
  | "Namespace"
  | "ServiceAccount"
  | "Node"
  | "NetworkPolicy"
  | "Service"
  | "EndpointSlice";
/** Per kind: its API group path, plural and scope. */
const KINDS: Record<Kind, { group: string; plural: string; namespaced: boolean }> = {
  Pod: { group: "api/v1", plural: "pods", namespaced: true },
  Namespace: { group: "api/v1", plural: "namespaces", namespaced: false },
  ServiceAccount: { group: "api/v1", plural: "serviceaccounts", namespaced: true },
  Node: { group: "api/v1", plural: "nodes", namespaced: false },
  NetworkPolicy: {
    group: "apis/networking.k8s.io/v1",
    plural: "networkpolicies",
    namespaced: true,
  },
  Service: { group: "api/v1", plural: "services", namespaced: true },
  EndpointSlice: {
    group: "apis/discovery.k8s.io/v1",
    plural: "endpointslices",
    namespaced: true,
  },
};
const apiVersionOf = (k: Kind) =>
  KINDS[k].group === "api/v1" ? "v1" : KINDS[k].group.slice("apis/".length);
type Obj = {
  apiVersion: string;
  kind: Kind;
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Record<string, unknown>;
  /** Top-level fields of kinds without a spec (EndpointSlice) and status. */
  [field: string]: unknown;
};
interface Event {
  rv: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: Obj;
}
interface Watcher {
  kind: Kind;
  namespace?: string;
  res: ServerResponse;
  bookmarks: boolean;
}

const key = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export class KubeApi {
  private rv = 100;
  private floor = 0;
  private readonly objects = new Map<string, Obj>();
  private readonly history: Event[] = [];
  private readonly watchers = new Set<Watcher>();
  private uid = 0;
  /** Every request's method and URL, in order. */
  readonly requests: string[] = [];
  /** When set, every request is answered with this HTTP status (a failing server). */
  failWith: number | undefined;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly caPem: string,
  ) {}

  /**
   * Listens on 127.0.0.1 (an ephemeral port), or on `port`; with `ips`, on the first of them, its
   * certificate valid for them all (for clients in other network namespaces, over a veth).
   */
  static async start(port = 0, ips: readonly string[] = []): Promise<KubeApi> {
    let api: KubeApi | undefined;
    const tls = selfSigned(ips);
    const server = createServer(tls, (req, res) => api?.handle(req, res));
    const sockets = new Set<{ destroy(): void; on(e: "close", f: () => void): unknown }>();
    server.on("connection", (c) => {
      sockets.add(c);
      c.on("close", () => sockets.delete(c));
    });
    (server as Server & { sockets?: typeof sockets }).sockets = sockets;
    await new Promise<void>((r) => server.listen(port, ips[0] ?? "127.0.0.1", r));
    const bound = (server.address() as AddressInfo).port;
    api = new KubeApi(server, `https://${ips[0] ?? "127.0.0.1"}:${bound}`, tls.cert);
    return api;
  }

  /** Writes a kubeconfig for `server` (default: this server's URL) to `path`. */
  writeKubeconfig(path: string, server = this.url): string {
    writeFileSync(
      path,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: test",
        "  cluster:",
        `    server: "${server}"`,
        `    certificate-authority-data: ${Buffer.from(this.caPem).toString("base64")}`,
        "users:",
        "- name: test",
        `  user: {token: ${KUBE_TOKEN}}`,
        "contexts:",
        "- name: test",
        "  context: {cluster: test, user: test}",
        "current-context: test",
        "",
      ].join("\n"),
    );
    return path;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  putNamespace(name: string, labels: Record<string, string> = {}): Obj {
    return this.put({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name,
        uid: "",
        resourceVersion: "",
        labels: { "kubernetes.io/metadata.name": name, ...labels },
      },
    });
  }

  putPod(
    namespace: string,
    name: string,
    labels: Record<string, string> = {},
    serviceAccountName = "default",
    annotations?: Record<string, string>,
    /** The container's `ports` (containerPort, name, protocol, hostPort). */
    ports?: Record<string, unknown>[],
  ): Obj {
    return this.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace,
        uid: "",
        resourceVersion: "",
        labels,
        ...(annotations ? { annotations } : {}),
      },
      spec: {
        serviceAccountName,
        containers: [{ name: "c", image: "none", ...(ports ? { ports } : {}) }],
      },
    });
  }

  putServiceAccount(namespace: string, name: string, labels: Record<string, string> = {}): Obj {
    return this.putObject("ServiceAccount", { name, namespace, labels });
  }

  /** A Node; `addresses` become its status.addresses (`{ type: "InternalIP", address }`, …). */
  putNode(
    name: string,
    labels: Record<string, string> = {},
    addresses?: { type: string; address: string }[],
  ): Obj {
    if (addresses === undefined) return this.putObject("Node", { name, labels });
    return this.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name, labels, uid: "", resourceVersion: "" },
      status: { addresses },
    });
  }

  /** A networking.k8s.io/v1 NetworkPolicy; `spec` as the API has it (`from`, `to`, …). */
  putNetworkPolicy(namespace: string, name: string, spec: Record<string, unknown>): Obj {
    return this.putObject("NetworkPolicy", { name, namespace }, spec);
  }

  /** A Service (`spec` as the API has it: type, clusterIP, ports, externalTrafficPolicy, …). */
  putService(
    namespace: string,
    name: string,
    spec: Record<string, unknown>,
    status?: Record<string, unknown>,
  ): Obj {
    return this.put({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace, uid: "", resourceVersion: "" },
      spec,
      ...(status ? { status } : {}),
    });
  }

  /** An EndpointSlice of `service` (label kubernetes.io/service-name), IPv4 unless told. */
  putEndpointSlice(
    namespace: string,
    name: string,
    service: string,
    endpoints: { addresses: string[]; nodeName?: string; conditions?: { ready?: boolean } }[],
    ports: { name?: string; protocol?: string; port?: number }[],
    addressType = "IPv4",
  ): Obj {
    return this.put({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name,
        namespace,
        uid: "",
        resourceVersion: "",
        labels: { "kubernetes.io/service-name": service },
      },
      addressType,
      endpoints,
      ports,
    });
  }

  /** Creates or replaces an object of any served kind. */
  putObject(
    kind: Kind,
    meta: { name: string; namespace?: string; labels?: Record<string, string> },
    spec?: Record<string, unknown>,
  ): Obj {
    return this.put({
      apiVersion: apiVersionOf(kind),
      kind,
      metadata: { ...meta, uid: "", resourceVersion: "" },
      ...(spec ? { spec } : {}),
    });
  }

  /** Deletes an object of any served kind (namespace undefined for cluster-scoped kinds). */
  deleteObject(kind: Kind, namespace: string | undefined, name: string): void {
    this.remove(`${kind}/${namespace ?? ""}/${name}`);
  }

  deletePod(namespace: string, name: string): void {
    this.remove(`Pod/${namespace}/${name}`);
  }

  deleteNamespace(name: string): void {
    this.remove(`Namespace//${name}`);
  }

  /** Forgets history up to now: watches and continue tokens from before get 410 Expired. */
  compact(): void {
    this.floor = this.rv;
  }

  /** Destroys every open watch stream mid-way (a dropped connection). */
  breakWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    return n;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watch that allows them. */
  bookmark(): void {
    for (const w of this.watchers) if (w.bookmarks) this.send(w, "BOOKMARK", this.bookmarkObj(w));
  }

  openWatches(): number {
    return this.watchers.size;
  }

  async close(): Promise<void> {
    this.breakWatches();
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    // Every raw connection (keep-alive ones of the client's agent too), so close() never waits.
    for (const c of (this.server as Server & { sockets?: Set<{ destroy(): void }> }).sockets ?? [])
      c.destroy();
    await closed;
  }

  // -------------------------------------------------------------------------------------------

  private put(o: Obj): Obj {
    const k = key(o);
    const old = this.objects.get(k);
    this.rv += 1;
    const obj: Obj = structuredClone(o);
    obj.metadata.uid = old?.metadata.uid ?? `uid-${++this.uid}`;
    obj.metadata.resourceVersion = String(this.rv);
    this.objects.set(k, obj);
    this.record({ rv: this.rv, type: old ? "MODIFIED" : "ADDED", object: obj });
    return obj;
  }

  private remove(k: string): void {
    const old = this.objects.get(k);
    if (!old) throw new Error(`${k} does not exist`);
    this.objects.delete(k);
    this.rv += 1;
    const obj = structuredClone(old);
    obj.metadata.resourceVersion = String(this.rv);
    this.record({ rv: this.rv, type: "DELETED", object: obj });
  }

  private record(e: Event): void {
    this.history.push(e);
    for (const w of this.watchers) if (matches(w, e.object)) this.send(w, e.type, e.object);
  }

  private send(w: Watcher, type: string, object: unknown): void {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private bookmarkObj(w: Watcher) {
    return {
      kind: w.kind,
      apiVersion: apiVersionOf(w.kind),
      metadata: { resourceVersion: this.resourceVersion },
    };
  }

  /** The objects of `kind` as they were at resourceVersion `at`, from the history. */
  private snapshot(kind: Kind, namespace: string | undefined, at: number): Obj[] {
    const state = new Map<string, Obj>();
    for (const e of this.history) {
      if (e.rv > at) break;
      if (e.type === "DELETED") state.delete(key(e.object));
      else state.set(key(e.object), e.object);
    }
    return [...state.values()]
      .filter(
        (o) => o.kind === kind && (namespace === undefined || o.metadata.namespace === namespace),
      )
      .sort((a, b) => key(a).localeCompare(key(b)));
  }

  private handle(req: IncomingMessage, res: ServerResponse): undefined {
    this.requests.push(`${req.method} ${req.url}`);
    if (req.headers.authorization !== `Bearer ${KUBE_TOKEN}`)
      return status(res, 401, "Unauthorized", "Unauthorized");
    if (this.failWith !== undefined)
      return status(res, this.failWith, "InternalError", "the test server was told to fail");
    const u = new URL(req.url ?? "/", "http://x");
    const parts = u.pathname.split("/").filter(Boolean);
    const group = parts[0] === "api" ? parts.slice(0, 2) : parts.slice(0, 3);
    const g = group.join("/");
    if (req.method !== "GET" || !Object.values(KINDS).some((k) => k.group === g))
      return status(res, 405, "MethodNotAllowed", `${req.method} ${u.pathname} is not served`);
    const p = parts.slice(group.length);
    const kindOf = (plural: string | undefined) =>
      (Object.keys(KINDS) as Kind[]).find(
        (k) => KINDS[k].group === g && KINDS[k].plural === plural,
      );
    const found = p[0] === "namespaces" && p.length >= 3 ? kindOf(p[2]) : kindOf(p[0]);
    if (found !== undefined) {
      const { plural, namespaced } = KINDS[found];
      // /{plural}: every namespace (or a cluster-scoped kind); /{plural}/{name}: cluster-scoped one
      if (p[0] === plural && p.length === 1) return this.collection(res, u, found, undefined);
      if (p[0] === plural && p.length === 2 && !namespaced)
        return this.one(res, `${found}//${p[1]}`, plural, p[1] as string);
      // /namespaces/{ns}/{plural}[/{name}]
      if (p[0] === "namespaces" && namespaced && p.length === 3)
        return this.collection(res, u, found, p[1]);
      if (p[0] === "namespaces" && namespaced && p.length === 4)
        return this.one(res, `${found}/${p[1]}/${p[3]}`, plural, p[3] as string);
    }
    status(res, 404, "NotFound", `the server could not find the requested resource`);
  }

  private one(res: ServerResponse, k: string, plural: string, name: string): undefined {
    const o = this.objects.get(k);
    if (!o) return status(res, 404, "NotFound", `${plural} "${name}" not found`);
    json(res, 200, o);
  }

  private collection(res: ServerResponse, u: URL, kind: Kind, namespace?: string): undefined {
    const q = u.searchParams;
    if (q.get("watch") === "true" || q.get("watch") === "1")
      return this.watch(res, q, kind, namespace);
    let at = this.rv;
    let offset = 0;
    const cont = q.get("continue");
    if (cont) {
      const t = JSON.parse(Buffer.from(cont, "base64url").toString()) as {
        rv: number;
        offset: number;
      };
      if (t.rv < this.floor)
        return status(res, 410, "Expired", "The provided continue parameter is too old");
      at = t.rv;
      offset = t.offset;
    }
    const all = this.snapshot(kind, namespace, at);
    const limit = Number(q.get("limit") ?? 0);
    const items = limit > 0 ? all.slice(offset, offset + limit) : all.slice(offset);
    const next = offset + items.length;
    const metadata: Record<string, unknown> = { resourceVersion: String(at) };
    if (next < all.length) {
      metadata.continue = Buffer.from(JSON.stringify({ rv: at, offset: next })).toString(
        "base64url",
      );
      metadata.remainingItemCount = all.length - next;
    }
    json(res, 200, { kind: `${kind}List`, apiVersion: apiVersionOf(kind), metadata, items });
  }

  private watch(
    res: ServerResponse,
    q: URLSearchParams,
    kind: Kind,
    namespace?: string,
  ): undefined {
    const w: Watcher = { kind, namespace, res, bookmarks: q.get("allowWatchBookmarks") === "true" };
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders(); // the client's watch() resolves on the headers, before any event
    const from = q.get("resourceVersion");
    if (from && from !== "0" && Number(from) < this.floor) {
      this.send(w, "ERROR", {
        kind: "Status",
        apiVersion: "v1",
        status: "Failure",
        message: `too old resource version: ${from} (${this.floor})`,
        reason: "Expired",
        code: 410,
      });
      res.end();
      return;
    }
    if (!from || from === "0") {
      for (const o of this.snapshot(kind, namespace, this.rv)) this.send(w, "ADDED", o);
    } else {
      for (const e of this.history)
        if (e.rv > Number(from) && matches(w, e.object)) this.send(w, e.type, e.object);
    }
    this.watchers.add(w);
    const timeout = Number(q.get("timeoutSeconds") ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on("close", () => {
      clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}

function matches(w: Watcher, o: Obj): boolean {
  return o.kind === w.kind && (w.namespace === undefined || o.metadata.namespace === w.namespace);
}

function json(res: ServerResponse, code: number, body: unknown): undefined {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function status(res: ServerResponse, code: number, reason: string, message: string): undefined {
  return json(res, code, {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    message,
    reason,
    code,
  });
}
