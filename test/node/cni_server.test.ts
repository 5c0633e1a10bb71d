// The node daemon's CNI hand-off server (src/node/cni_server.ts) in-process on a temporary
// socket: a caller that half-closes after its request (as the shim does) gets the answer of a
// call that takes a while (a slow store; the server once ended its side at the caller's FIN and
// such calls went unanswered); calls from another network namespace, naming another datastore
// or a CNI_NETNS that is no namespace are declined; the socket is 0600; a caller that shuts down
// without a request (another daemon's liveness probe of the path) is ended too, so close() does
// not wait on a half-open socket (it did: a daemon beside another took 10 s to stop).
import { mkdtempSync, rmSync, statSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeAnswer, encodeRequest, type HandoffRequest } from "../../src/cni/handoff.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { silentLog } from "../../src/lib/log.js";
import { serveCni } from "../../src/node/cni_server.js";
import { putPool } from "../ipam/helpers.js";

/** A store whose reads take 150 ms: the call outlives the caller's half-close by far. */
class SlowStore extends MemoryDatastore {
  override async get(key: string) {
    await new Promise((r) => setTimeout(r, 150));
    return super.get(key);
  }
}

const ownNetns = () => {
  const s = statSync("/proc/self/ns/net");
  return `${s.dev}:${s.ino}`;
};

function call(path: string, req: HandoffRequest): Promise<ReturnType<typeof decodeAnswer>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(path, () => sock.end(encodeRequest(req)));
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("error", reject);
    sock.on("close", () => {
      try {
        resolve(decodeAnswer(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

describe("CNI hand-off server", () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-cni-server-"));
  const path = join(dir, "cni.sock");
  const store = new SlowStore(`cni-server-${process.pid}`);
  let server: { close(): Promise<void> };
  const stdin = (datastore: string) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "k8s-pod-network",
      type: "ocelot-cni",
      datastore,
      nodename: "node-s",
      ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], assign_ipv6: false },
    });
  const req = (over: Partial<HandoffRequest["env"]> = {}, ds = store.url): HandoffRequest => ({
    plugin: "ocelot-ipam",
    env: {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "ctr-1",
      CNI_NETNS: "/proc/self/ns/net",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/nonexistent",
      OCELOT_CNI_CALLER_NETNS: ownNetns(),
      ...over,
    },
    stdin: stdin(ds),
  });

  beforeAll(async () => {
    await putPool(store, "pool", "10.81.0.0/24", { blockSize: 26 });
    server = await serveCni({ path, store, log: silentLog });
  });
  afterAll(async () => {
    await server?.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves a root-only socket", () => {
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("answers a slow call after the caller's half-close, as the plugin would", async () => {
    const a = await call(path, req());
    expect(a.declined).toBe(false);
    if (a.declined) return;
    expect(a.exitCode, a.stdout).toBe(0);
    expect(JSON.parse(a.stdout).ips[0].address).toMatch(/^10\.81\.0\.\d+\/32$/);
    expect(a.stdout.endsWith("}\n")).toBe(true);
  });

  it("declines another namespace's call, another datastore and a CNI_NETNS that is no namespace", async () => {
    expect(await call(path, req({ OCELOT_CNI_CALLER_NETNS: "1:2" }))).toEqual({ declined: true });
    expect(await call(path, req({}, "memory:another"))).toEqual({ declined: true });
    expect(await call(path, req({ CNI_NETNS: dir }))).toEqual({ declined: true });
  });

  it("ends its side to a caller that shuts down without a request (another daemon's probe), so close() is prompt", async () => {
    const probed = join(dir, "probed.sock");
    const other = await serveCni({ path: probed, store, log: silentLog });
    const bounded = <T>(what: string, p: Promise<T>) =>
      Promise.race([
        p,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`${what}: still waiting after 30 s`)), 30_000).unref(),
        ),
      ]);
    const probe = net.connect(probed, () => probe.end());
    // The probe closes only once the server has ended its side too (no half-open socket left).
    await bounded("the probe's socket closed", new Promise((r) => probe.once("close", r)));
    await bounded("the server closed", other.close());
  });
});
