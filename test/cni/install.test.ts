// The real `bin/ocelot install-cni` against temporary CNI bin and conf directories: the files,
// their modes, the conflist (portmap chained) and datastore setting; a second run rewrites
// nothing; a changed setting replaces only the changed file, by rename (a new inode, no
// temporary left); etcd TLS files are copied 0600 and named by host path; --uninstall removes
// exactly what was written and keeps files that are not ours or were changed since.
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { parseDatastoreFile } from "../../src/cni/datastore_file.js";
import { applyInstall, type InstallSettings, uninstall } from "../../src/cni/install.js";
import { runSync } from "../helpers/limits.js";

const BIN = new URL("../../bin", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

describe("ocelot install-cni (real bin/ocelot, temporary directories)", () => {
  const top = mkdtempSync(join(tmpdir(), "ocelot-install-cni-"));
  afterAll(() => rmSync(top, { recursive: true, force: true }));
  let n = 0;
  let dir: string;
  let binDir: string;
  let confDir: string;
  beforeEach(() => {
    dir = join(top, String(++n));
    binDir = join(dir, "opt/cni/bin");
    confDir = join(dir, "etc/cni/net.d");
  });
  const install = (extra: string[] = [], env: Record<string, string> = {}) => {
    const r = runSync(
      join(BIN, "ocelot"),
      ["install-cni", "--bin-dir", binDir, "--conf-dir", confDir, "--json", ...extra],
      { env: { PATH: process.env.PATH, ...env } },
    );
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { written: string[]; unchanged: string[]; removed: string[] };
  };
  const mode = (p: string) => statSync(p).mode & 0o777;
  const conflistPath = () => join(confDir, "10-ocelot.conflist");

  it("writes the launchers 0755, the conflist 0644 with portmap chained, the datastore setting 0600", () => {
    const r = install([
      "--datastore",
      "etcd://10.0.0.5:2379",
      "--nodename",
      "node-7",
      "--mtu",
      "1450",
    ]);
    // The launchers, written after the payload they run, then the conf files.
    const payload = r.written.filter((p) => p.startsWith(join(binDir, "ocelot.d/")));
    expect(r.written.slice(payload.length)).toEqual([
      join(binDir, "ocelot-cni"),
      join(binDir, "ocelot-ipam"),
      join(confDir, "ocelot-datastore"),
      conflistPath(),
    ]);
    const version = /^ocelot\.d\/([0-9a-f]{12})\//.exec(
      payload[0]?.slice(binDir.length + 1) ?? "",
    )?.[1];
    expect(version).toBeDefined();
    const payloadDir = join(binDir, "ocelot.d", version as string);
    for (const p of payload) expect(p.startsWith(`${payloadDir}/`), p).toBe(true);
    // Node.js as it ran the install, its C library and loader, the bundles, the netlink addon.
    expect(readFileSync(join(payloadDir, "node")).equals(readFileSync(process.execPath))).toBe(
      true,
    );
    const names = new Set(payload.map((p) => p.slice(payloadDir.length + 1)));
    for (const f of [
      "lib/libc.so.6",
      "lib/libstdc++.so.6",
      "app/native/build/Release/ocelot_netlink.node",
      "app/dist/bundle/ocelot-cni.cjs",
      "app/dist/bundle/ocelot-cni.cjs.cache",
      "app/dist/bundle/ocelot-ipam.cjs",
      "app/node_modules/better-sqlite3/build/Release/better_sqlite3.node",
    ])
      expect(names.has(f), f).toBe(true);
    // etcd3's rpc.proto is compiled into the bundles (scripts/build.mjs): none of etcd3 is copied.
    expect([...names].filter((n) => n.includes("node_modules/etcd3/"))).toEqual([]);
    expect([...names].some((n) => /^lib\/ld-linux[^/]*\.so/.test(n))).toBe(true);
    expect(mode(join(payloadDir, "node"))).toBe(0o755);
    expect(mode(join(payloadDir, "app/dist/bundle/ocelot-cni.cjs"))).toBe(0o644);
    for (const p of ["ocelot-cni", "ocelot-ipam"]) {
      expect(mode(join(binDir, p))).toBe(0o755);
      const text = readFileSync(join(binDir, p), "utf8");
      expect(text).toContain(`ocelot.d/${version}`);
      expect(text).not.toContain(ROOT);
    }
    expect(mode(conflistPath())).toBe(0o644);
    expect(mode(join(confDir, "ocelot-datastore"))).toBe(0o600);
    expect(JSON.parse(readFileSync(conflistPath(), "utf8"))).toEqual({
      name: "k8s-pod-network",
      cniVersion: "1.0.0",
      plugins: [
        {
          type: "ocelot-cni",
          datastore_file: join(confDir, "ocelot-datastore"),
          nodename: "node-7",
          mtu: 1450,
          ipam: { type: "ocelot-ipam" },
        },
        { type: "portmap", snat: true, capabilities: { portMappings: true } },
      ],
    });
    const ds = join(confDir, "ocelot-datastore");
    expect(parseDatastoreFile(readFileSync(ds, "utf8"), ds)).toEqual({
      url: "etcd://10.0.0.5:2379",
      etcd: {},
    });
    // The installed launchers run the plugins with no Node.js on PATH (and the code cache made
    // by the same Node.js is taken).
    for (const p of ["ocelot-cni", "ocelot-ipam"]) {
      const v = runSync(join(binDir, p), [], {
        env: { CNI_COMMAND: "VERSION", PATH: "/nonexistent", OCELOT_BUNDLE_REPORT: "1" },
        input: '{"cniVersion":"0.4.0"}',
      });
      expect(v.status, v.stderr).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ cniVersion: "0.4.0" });
      expect(v.stderr).toContain("code cache accepted");
    }
  });

  it("the launchers answer VERSION as the plugins do, byte for byte, and alone for libcni's stdin", () => {
    install(["--datastore", "file:/var/lib/ocelot/store.db"]);
    const inputs = [
      '{"cniVersion":"0.4.0"}', // what libcni sends: answered by the launcher
      '{"cniVersion":"1.0.0"}\n',
      '{"cniVersion":"0.3.1"}',
      '{"cniVersion":"0.2.0"}', // not supported: 1.0.0, as the plugin answers
      '{"cniVersion":"9.9.9"}',
      '{"cniVersion": "0.3.0"}', // any other shape: passed to the plugin as read
      '{\n  "cniVersion": "0.4.0",\n  "name": "k8s-pod-network"\n}\n',
      '{"cniVersion":"1.0.0","cniVersion":"0.4.0"}',
      '{"cniVersion":"x"}',
      "{}",
      "",
    ];
    for (const p of ["ocelot-cni", "ocelot-ipam"])
      for (const input of inputs) {
        const run = (env: Record<string, string>) =>
          runSync(join(binDir, p), [], {
            env: { CNI_COMMAND: "VERSION", PATH: "/nonexistent", ...env },
            input,
          });
        const fast = run({});
        const plugin = run({ OCELOT_BUNDLE_REPORT: "1" }); // always the plugin itself
        expect(plugin.stderr).toContain("code cache accepted");
        expect([fast.status, fast.stdout], `${p} ${JSON.stringify(input)}`).toEqual([
          plugin.status,
          plugin.stdout,
        ]);
      }
    // With the payload gone, only the launcher's own answer can come: libcni's stdin gets it,
    // anything else needs the plugin (and fails here).
    const alone = join(dir, "alone");
    mkdirSync(alone, { recursive: true });
    writeFileSync(join(alone, "ocelot-cni"), readFileSync(join(binDir, "ocelot-cni")), {
      mode: 0o755,
    });
    const bare = (input: string) =>
      runSync(join(alone, "ocelot-cni"), [], {
        env: { CNI_COMMAND: "VERSION", PATH: "/nonexistent" },
        input,
      });
    const simple = bare('{"cniVersion":"0.4.0"}');
    expect(simple.status, simple.stderr).toBe(0);
    expect(JSON.parse(simple.stdout)).toEqual({
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    });
    expect(bare('{"cniVersion": "0.4.0"}').status).not.toBe(0);
  });

  it("is idempotent, and replaces a changed file by rename, leaving no temporary file", () => {
    install(["--datastore", "file:/var/lib/ocelot/store.db"]);
    const inodes = new Map(
      [conflistPath(), join(binDir, "ocelot-cni")].map((p) => [p, statSync(p).ino]),
    );
    const again = install(["--datastore", "file:/var/lib/ocelot/store.db"]);
    expect(again.written).toEqual([]);
    expect(again.unchanged.length).toBeGreaterThan(30);
    for (const [p, ino] of inodes) expect(statSync(p).ino).toBe(ino);
    const changed = install(["--datastore", "file:/var/lib/ocelot/store.db"], { CNI_MTU: "1400" });
    expect(changed.written).toEqual([conflistPath()]);
    expect(statSync(conflistPath()).ino).not.toBe(inodes.get(conflistPath()));
    expect(statSync(join(binDir, "ocelot-cni")).ino).toBe(inodes.get(join(binDir, "ocelot-cni")));
    expect(JSON.parse(readFileSync(conflistPath(), "utf8")).plugins[0].mtu).toBe(1400);
    for (const d of [binDir, confDir])
      expect(readdirSync(d).filter((f) => f.includes(".tmp-"))).toEqual([]);
    // A file someone changed is put back.
    writeFileSync(join(binDir, "ocelot-ipam"), "#!/bin/sh\nexit 1\n");
    expect(
      install(["--datastore", "file:/var/lib/ocelot/store.db"], { CNI_MTU: "1400" }).written,
    ).toEqual([join(binDir, "ocelot-ipam")]);
  });

  it("takes Calico's variables: ETCD_ENDPOINTS and TLS files (copied 0600), CNI_CONF_NAME, NODENAME, --host-conf-dir", () => {
    const pki = join(dir, "pki");
    mkdirSync(pki, { recursive: true });
    for (const f of ["ca.pem", "cert.pem", "key.pem"])
      writeFileSync(join(pki, f), `${f} contents\n`);
    confDir = join(dir, "host/etc/cni/net.d");
    install([], {
      ETCD_ENDPOINTS: "https://10.0.0.5:2379",
      ETCD_CA_CERT_FILE: join(pki, "ca.pem"),
      ETCD_CERT_FILE: join(pki, "cert.pem"),
      ETCD_KEY_FILE: join(pki, "key.pem"),
      CNI_CONF_NAME: "05-ocelot.conflist",
      NODENAME: "node-9",
    });
    const conf = JSON.parse(readFileSync(join(confDir, "05-ocelot.conflist"), "utf8"));
    expect(conf.plugins[0]).toMatchObject({ nodename: "node-9" });
    const tls = join(confDir, "ocelot-tls");
    for (const f of ["etcd-ca", "etcd-cert", "etcd-key"]) expect(mode(join(tls, f))).toBe(0o600);
    expect(readFileSync(join(tls, "etcd-key"), "utf8")).toBe("key.pem contents\n");
    const ds = join(confDir, "ocelot-datastore");
    expect(JSON.parse(readFileSync(ds, "utf8"))).toEqual({
      datastore: "etcds://10.0.0.5:2379",
      etcd_ca_cert_file: join(confDir, "ocelot-tls/etcd-ca"),
      etcd_cert_file: join(confDir, "ocelot-tls/etcd-cert"),
      etcd_key_file: join(confDir, "ocelot-tls/etcd-key"),
    });
    // Under /host the conflist names the host's paths (CNI_NET_DIR): here the directory given.
    const hostDir = "/etc/cni/net.d";
    install(["--host-conf-dir", hostDir], {
      ETCD_ENDPOINTS: "http://e:2379",
      CNI_CONF_NAME: "05-ocelot.conflist",
    });
    const conf2 = JSON.parse(readFileSync(join(confDir, "05-ocelot.conflist"), "utf8"));
    expect(conf2.plugins[0].datastore_file).toBe("/etc/cni/net.d/ocelot-datastore");
    // The TLS copies of the first install are gone: this one has none.
    expect(readdirSync(confDir).sort()).toEqual([
      ".ocelot-install",
      "05-ocelot.conflist",
      "ocelot-datastore",
    ]);
  });

  it("--uninstall removes exactly what it wrote; others' files and files changed since stay", () => {
    mkdirSync(binDir, { recursive: true });
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(binDir, "portmap"), "someone else's\n");
    writeFileSync(join(confDir, "99-other.conflist"), "{}\n");
    install();
    writeFileSync(join(binDir, "ocelot-ipam"), "#!/bin/sh\n# edited by hand\n");
    const r = runSync(join(BIN, "ocelot"), [
      "install-cni",
      "--uninstall",
      "--conf-dir",
      confDir,
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.kept).toEqual([join(binDir, "ocelot-ipam")]);
    expect(out.removed).toContain(join(binDir, "ocelot-cni"));
    expect(out.removed).toContain(conflistPath());
    // The payload went with its directories (ocelot.d/ included).
    expect(readdirSync(binDir).sort()).toEqual(["ocelot-ipam", "portmap"]);
    expect(readdirSync(confDir)).toEqual(["99-other.conflist"]);
    // Again: nothing recorded, nothing removed.
    const again = runSync(join(BIN, "ocelot"), [
      "install-cni",
      "--uninstall",
      "--conf-dir",
      confDir,
      "--json",
    ]);
    expect(JSON.parse(again.stdout)).toEqual({ removed: [], kept: [] });
  });

  it("a new payload version goes into a new directory; the old one is removed once the launchers name the new one", () => {
    const settings = (v: string, body: string): InstallSettings => ({
      binDir,
      confDir,
      hostConfDir: confDir,
      confName: "10-ocelot.conflist",
      networkName: "n",
      mtu: 1500,
      datastore: { datastore: "file:/x.db" },
      plugins: [
        { name: `ocelot.d/${v}/app/x.cjs`, content: body, mode: 0o644 },
        { name: `ocelot.d/${v}/lib/libc.so.6`, content: body },
        { name: "ocelot-cni", content: `#!/bin/sh\n# ${v}\n` },
      ],
    });
    applyInstall(settings("aaaaaaaaaaaa", "one"));
    const r = applyInstall(settings("bbbbbbbbbbbb", "two"));
    expect(r.written.map((p) => p.slice(binDir.length + 1))).toEqual([
      "ocelot.d/bbbbbbbbbbbb/app/x.cjs",
      "ocelot.d/bbbbbbbbbbbb/lib/libc.so.6",
      "ocelot-cni",
    ]);
    expect(r.removed.map((p) => p.slice(binDir.length + 1)).sort()).toEqual([
      "ocelot.d/aaaaaaaaaaaa/app/x.cjs",
      "ocelot.d/aaaaaaaaaaaa/lib/libc.so.6",
    ]);
    expect(readdirSync(join(binDir, "ocelot.d"))).toEqual(["bbbbbbbbbbbb"]);
    expect(mode(join(binDir, "ocelot.d/bbbbbbbbbbbb/app/x.cjs"))).toBe(0o644);
    expect(uninstall(confDir).kept).toEqual([]);
    expect(readdirSync(binDir)).toEqual([]);
  });

  it("refuses a bad CNI_MTU or ETCD_ENDPOINTS naming it, writing nothing", () => {
    for (const [env, text] of [
      [{ CNI_MTU: "9" }, 'CNI_MTU: "9" is not an MTU'],
      [{ ETCD_ENDPOINTS: "http://a:1,https://b:2" }, "ETCD_ENDPOINTS:"],
    ] as const) {
      const r = runSync(
        join(BIN, "ocelot"),
        ["install-cni", "--bin-dir", binDir, "--conf-dir", confDir],
        {
          env: { PATH: process.env.PATH, ...env },
        },
      );
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(text);
    }
    expect(() => readdirSync(confDir)).toThrow();
  });
});
