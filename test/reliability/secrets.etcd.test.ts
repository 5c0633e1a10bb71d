// Credentials never leak (issue 17, security): a real etcd with authentication, its user and
// password in OCELOT_ETCD_USERNAME/PASSWORD given to the real `ocelot node run` (no BGP,
// programming a namespace), `ocelot-ipam`, and the CLI (and once in a URL, which is refused). etcd is frozen for a while so that each
// of them meets errors that talk about the datastore. Then everything they printed and served
// (the daemon's log, /metrics, /readyz, /livez, the CNI error result and the plugin's log file,
// the CLI's error) is searched for the password, also percent-encoded: it is never there.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { netConf, runCni } from "../ipam/cni_run.js";
import { BIN, NodeProcess } from "../node/harness.js";

const PASSWORD = "Etcd-Pw/93714 xyz!";
const ENCODED = encodeURIComponent(PASSWORD);
const CREDS = { OCELOT_ETCD_USERNAME: "ocelot", OCELOT_ETCD_PASSWORD: PASSWORD };
const noEtcdctl = runSync("etcdctl", ["version"]).status === 0 ? undefined : "etcdctl not found";
const skip = skipWithReason(
  "credentials never leak",
  netnsUnavailableReason() ?? etcdUnavailableReason() ?? noEtcdctl,
);

describe.skipIf(skip)("credentials in output", () => {
  let etcd: EtcdServer;
  let ns: Netns;
  let dir: string;
  let daemon: NodeProcess;
  let frozen = false;
  let url = "";
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const seen: { where: string; text: string }[] = [];
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(60_000),
    });
    const text = await r.text();
    seen.push({ where: path, text });
    return { status: r.status, text };
  };
  const ctl = (...args: string[]) => {
    const r = runSync("etcdctl", ["--endpoints", etcd.endpoint, ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-secrets-"));
    etcd = await startEtcd();
    ctl("user", "add", "root:rootpw");
    ctl("user", "grant-role", "root", "root");
    ctl("user", "add", `ocelot:${PASSWORD}`);
    ctl("role", "add", "ocelot");
    ctl("role", "grant-permission", "ocelot", "--prefix=true", "readwrite", "/");
    ctl("user", "grant-role", "ocelot", "ocelot");
    ctl("auth", "enable");
    url = etcd.url;
    ns = Netns.create("sec");
    const proc: ChildProcess = spawn(
      join(BIN, "ocelot"),
      [
        "node",
        "run",
        "--nodename",
        "secret-node",
        "--ip",
        "192.0.2.60/24",
        "--networking-backend",
        "none",
        "--ipv4-pool-cidr",
        "10.74.0.0/24",
        "--netns",
        ns.name,
        "--datastore",
        url,
        "--metrics-address",
        `127.0.0.1:${port}`,
        "--status-socket",
        join(dir, "node.sock"),
        "--mtu-file",
        join(dir, "mtu"),
        "--log-level",
        "debug",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...CREDS } },
    );
    daemon = new NodeProcess(ns, proc);
    await waitFor(
      "the daemon ready",
      async () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${daemon.log}`);
        return (await get("/readyz").catch(() => ({ status: 0 }))).status === 200;
      },
      60_000,
      200,
    );
  });

  afterAll(async () => {
    if (frozen) process.kill(etcd.pid, "SIGCONT");
    await daemon?.stop();
    ns?.destroy();
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the daemon, the IPAM plugin and the CLI never print or serve the datastore password", async () => {
    // A CNI ADD that works, then etcd frozen: the daemon, a second ADD and the CLI all fail.
    const logFile = join(dir, "cni.log");
    const conf = { ...netConf(url, "secret-node"), log_file_path: logFile, log_level: "debug" };
    const ok = await runCni(join(BIN, "ocelot-ipam"), "ADD", "sec-1", conf, undefined, CREDS);
    seen.push({ where: "ocelot-ipam ADD", text: ok.stdout + ok.stderr });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    process.kill(etcd.pid, "SIGSTOP");
    frozen = true;
    const failed = await runCni(join(BIN, "ocelot-ipam"), "ADD", "sec-2", conf, undefined, {
      ...CREDS,
      OCELOT_ETCD_REQUEST_TIMEOUT_MS: "1500",
      OCELOT_ETCD_DIAL_TIMEOUT_MS: "1500",
    });
    seen.push({ where: "ocelot-ipam ADD (etcd frozen)", text: failed.stdout + failed.stderr });
    expect(failed.code).not.toBe(0);
    const cli = runSync(join(BIN, "ocelot"), ["get", "ippools", "--datastore", url], {
      env: {
        ...process.env,
        OCELOT_ETCD_DIAL_TIMEOUT_MS: "1500",
        OCELOT_ETCD_REQUEST_TIMEOUT_MS: "1500",
      },
      timeout: HANG_MS,
    });
    seen.push({ where: "ocelot get ippools (etcd frozen)", text: cli.stdout + cli.stderr });
    expect(cli.status).not.toBe(0);
    // Credentials in a URL are refused, the URL shown with them masked.
    const inUrl = runSync(join(BIN, "ocelot"), [
      "get",
      "ippools",
      "--datastore",
      `etcd://ocelot:${ENCODED}@${etcd.endpoint}`,
    ]);
    seen.push({ where: "ocelot with credentials in the URL", text: inUrl.stdout + inUrl.stderr });
    expect(inUrl.stderr).toContain("etcd://***@");
    await waitFor(
      "/readyz naming the datastore",
      async () => (await get("/readyz")).text.includes("datastore unreachable"),
      60_000,
      500,
    );
    await get("/metrics");
    await get("/livez");
    process.kill(etcd.pid, "SIGCONT");
    frozen = false;
    await waitFor("ready again", async () => (await get("/readyz")).status === 200, 60_000, 200);
    await get("/metrics");
    seen.push({ where: "the daemon's log", text: daemon.log });
    seen.push({ where: "the CNI log file", text: readFileSync(logFile, "utf8") });
    // What was collected talks about the datastore (so the search is not vacuous) ...
    const all = seen.map((s) => s.text).join("\n");
    expect(all).toContain(etcd.endpoint);
    expect(all).toContain("datastore unreachable");
    // ... and never shows the password, plain or encoded.
    for (const s of seen) {
      expect(s.text, `the password in ${s.where}`).not.toContain(PASSWORD);
      expect(s.text, `the encoded password in ${s.where}`).not.toContain(ENCODED);
    }
    console.log(
      `credentials: searched ${seen.length} outputs (${all.length} characters): no password`,
    );
  });
});
