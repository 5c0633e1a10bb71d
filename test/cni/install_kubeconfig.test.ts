// `ocelot install-cni` writing the plugins' kubeconfig, as Calico's install-cni writes
// calico-kubeconfig: the real `bin/ocelot install-cni` with KUBERNETES_SERVICE_HOST/PORT and a
// service account directory (token, ca.crt) of the small API server (test/helpers/kube_api.ts)
// writes `ocelot-kubeconfig` (0600) and names it in the conflist (`kubernetes.kubeconfig`, the
// host's path); the real client reads a pod through it (src/k8s/pod_reader.ts, what ocelot-cni
// does at ADD); --kube-api-server overrides the variables; a missing token is refused by name,
// writing nothing; without an API server nothing is written for Kubernetes; --uninstall
// removes it. With --watch it stays running and rewrites the kubeconfig when the service
// account's token is rotated (an old token the API server refuses, then the new one it takes),
// and exits 0 on SIGTERM.

import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPodFacts } from "../../src/k8s/pod_reader.js";
import { KUBE_TOKEN, KubeApi } from "../helpers/kube_api.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";

const BIN = new URL("../../bin", import.meta.url).pathname;

describe("ocelot install-cni: the plugins' kubeconfig from the service account", () => {
  let api: KubeApi;
  let top: string;
  let sa: string;
  let n = 0;
  beforeAll(async () => {
    api = await KubeApi.start();
    api.putNamespace("team-a", { team: "a" });
    api.putPod("team-a", "web-1", { app: "web" }, "web-sa");
    top = mkdtempSync(join(tmpdir(), "ocelot-install-kube-"));
    sa = join(top, "sa");
    mkdirSync(sa);
    writeFileSync(join(sa, "token"), `${KUBE_TOKEN}\n`);
    writeFileSync(join(sa, "ca.crt"), api.caPem);
  });
  afterAll(async () => {
    await api?.close();
    if (top) rmSync(top, { recursive: true, force: true });
  });

  const install = (extra: string[], env: Record<string, string>) => {
    const dir = join(top, String(++n));
    const confDir = join(dir, "host/etc/cni/net.d");
    const r = runSync(
      join(BIN, "ocelot"),
      [
        ...["install-cni", "--bin-dir", join(dir, "bin"), "--conf-dir", confDir],
        ...["--host-conf-dir", "/etc/cni/net.d", "--service-account-dir", sa, ...extra],
      ],
      { env: { PATH: process.env.PATH, ...env } },
    );
    return { r, confDir };
  };
  const port = () => new URL(api.url).port;

  it("writes ocelot-kubeconfig 0600, names it in the conflist, and the client reads pods with it", async () => {
    const { r, confDir } = install([], {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: port(),
    });
    expect(r.status, r.stderr).toBe(0);
    const path = join(confDir, "ocelot-kubeconfig");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const conflist = JSON.parse(readFileSync(join(confDir, "10-ocelot.conflist"), "utf8"));
    expect(conflist.plugins[0].kubernetes).toEqual({
      kubeconfig: "/etc/cni/net.d/ocelot-kubeconfig",
    });
    const facts = await readPodFacts(path, { namespace: "team-a", name: "web-1" }, 10_000);
    expect(facts.labels).toEqual({ app: "web" });
    expect(facts.namespaceLabels.team).toBe("a");
    expect(facts.serviceAccount).toBe("web-sa");
    // --uninstall removes it with the rest.
    const u = runSync(join(BIN, "ocelot"), ["install-cni", "--conf-dir", confDir, "--uninstall"]);
    expect(u.status, u.stderr).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  it("--kube-api-server names the server; without one no kubeconfig is written", async () => {
    const withFlag = install(["--kube-api-server", api.url], {});
    expect(withFlag.r.status, withFlag.r.stderr).toBe(0);
    const facts = await readPodFacts(
      join(withFlag.confDir, "ocelot-kubeconfig"),
      { namespace: "team-a", name: "web-1" },
      10_000,
    );
    expect(facts.labels).toEqual({ app: "web" });
    const none = install([], {});
    expect(none.r.status, none.r.stderr).toBe(0);
    expect(existsSync(join(none.confDir, "ocelot-kubeconfig"))).toBe(false);
    const conflist = JSON.parse(readFileSync(join(none.confDir, "10-ocelot.conflist"), "utf8"));
    expect(conflist.plugins[0].kubernetes).toBeUndefined();
  });

  it("a service account without its token is refused by name, and nothing is written", () => {
    const { r, confDir } = install(["--service-account-dir", join(top, "nowhere")], {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: port(),
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/service account's token ".*nowhere\/token".*ENOENT/);
    expect(existsSync(confDir)).toBe(false);
  });

  it("--watch: a rotated token reaches the kubeconfig, the client is let in with it; SIGTERM ends it", async () => {
    const dir = join(top, "watch");
    const confDir = join(dir, "host/etc/cni/net.d");
    const rotating = join(dir, "sa");
    mkdirSync(rotating, { recursive: true });
    writeFileSync(join(rotating, "token"), "an-expired-token\n");
    writeFileSync(join(rotating, "ca.crt"), api.caPem);
    const child = spawn(
      join(BIN, "ocelot"),
      [
        ...["install-cni", "--bin-dir", join(dir, "bin"), "--conf-dir", confDir],
        ...["--host-conf-dir", "/etc/cni/net.d", "--service-account-dir", rotating],
        ...["--watch", "--watch-interval", "1"],
      ],
      {
        env: {
          PATH: process.env.PATH,
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: port(),
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const kill = setTimeout(() => child.kill("SIGKILL"), HANG_MS);
    const path = join(confDir, "ocelot-kubeconfig");
    const ref = { namespace: "team-a", name: "web-1" };
    try {
      await waitFor("the first install", () =>
        out.includes("10-ocelot.conflist") ? true : undefined,
      );
      await expect(readPodFacts(path, ref, 10_000)).rejects.toThrow(/401|Unauthorized/);
      const before = out;
      writeFileSync(join(rotating, "token"), `${KUBE_TOKEN}\n`);
      await waitFor("the rotated token in the kubeconfig", () =>
        readFileSync(path, "utf8").includes(KUBE_TOKEN) ? true : undefined,
      );
      expect((await readPodFacts(path, ref, 10_000)).labels).toEqual({ app: "web" });
      await waitFor("the pass's report", () =>
        /written {3}.*ocelot-kubeconfig/.test(out.slice(before.length)) ? true : undefined,
      );
      // Only the kubeconfig changed: nothing else was rewritten, and a pass names only changes.
      expect(out.slice(before.length)).not.toMatch(/conflist|unchanged/);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      child.kill("SIGTERM");
      expect(await exited, err).toBe(0);
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
