// The Dockerfile built for real with podman (FROM the shared Debian base, Node 20 from the npm
// registry): `ocelot --version` and `ocelot-cni` VERSION run in it, the tools the daemon runs are
// there (iproute2, iptables nft and legacy, ipset), and what only builds is not (compiler, dev
// dependencies). Prints the image's size and the build time (README's performance table).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module of the build scripts, without types
import { EXTERNAL_FILES, EXTERNAL_MODULES } from "../../scripts/externals.mjs";
import { skipWithReason } from "../helpers/netns.js";
import {
  BASE_IMAGE,
  buildOcelotImage,
  containersUnavailableReason,
  IMAGES,
  Podman,
  root,
} from "./harness.js";

const skip = skipWithReason("container image", containersUnavailableReason());

describe.skipIf(skip)("Dockerfile", () => {
  let podman: Podman;
  beforeAll(() => {
    podman = new Podman();
    podman.ensureBaseImage();
  }, 30 * 60_000);
  afterAll(() => podman?.cleanup());

  const inImage = (...cmd: string[]) =>
    podman.run(["run", "--rm", "--network", "none", IMAGES.ocelot, ...cmd]);

  it(
    "builds with podman from the shared base (BASE build argument)",
    () => {
      const seconds = buildOcelotImage(podman);
      const size = podman.imageSize(IMAGES.ocelot);
      console.log(
        `image ${IMAGES.ocelot}: ${(size / 1e6).toFixed(1)} MB (${(size / 2 ** 20).toFixed(1)} MiB), built in ${seconds.toFixed(0)} s (cached layers count); base ${BASE_IMAGE}: ${(podman.imageSize(BASE_IMAGE) / 1e6).toFixed(1)} MB`,
      );
      // The goal: no more than 150 MB (118.1 MB when written: a regression guard).
      expect(size).toBeLessThanOrEqual(150e6);
    },
    60 * 60_000,
  );

  it("runs ocelot --version and ocelot-cni VERSION", () => {
    const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
    const v = inImage("ocelot", "--version");
    expect(v.stderr).toBe("");
    expect(v.stdout.trim()).toBe(version);
    const cni = podman.run(
      [
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "CNI_COMMAND=VERSION",
        "-i",
        IMAGES.ocelot,
        "ocelot-cni",
      ],
      { input: '{"cniVersion":"1.0.0"}' },
    );
    expect(cni.status, cni.stderr).toBe(0);
    const out = JSON.parse(cni.stdout);
    expect(out.supportedVersions).toContain("1.0.0");
    expect(out.supportedVersions).toContain("0.4.0");
    const ipam = podman.run(
      [
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "CNI_COMMAND=VERSION",
        "-i",
        IMAGES.ocelot,
        "ocelot-ipam",
      ],
      { input: '{"cniVersion":"1.0.0"}' },
    );
    expect(ipam.status, ipam.stderr).toBe(0);
    expect(JSON.parse(ipam.stdout).supportedVersions).toContain("1.0.0");
  });

  it("has what runs (Node 20, iproute2, iptables nft and legacy, ipset, nsenter, wg, wireguard-go) and nothing that only builds or installs", () => {
    const r = inImage(
      "sh",
      "-c",
      [
        "node --version",
        "ip -V",
        "iptables-nft --version",
        "iptables-legacy --version",
        "ipset --version",
        "wg --version",
        "wireguard-go --version",
        "command -v nsenter sysctl unshare mount",
        "for x in gcc g++ cc make python3 npm apt-get dpkg perl; do command -v $x && echo HAS-$x; done",
        "ls /opt/ocelot/node_modules",
        // Scoped packages by their full name (@scope/name).
        "(cd /opt/ocelot/node_modules && ls -d @*/* 2>/dev/null); true",
        "test -e /opt/ocelot/native/build/Release/ocelot_netlink.node && echo ADDON",
        "test -e /opt/ocelot/src && echo HAS-SRC; true",
        "test -e /var/lib/dpkg && echo HAS-dpkg-database; true",
        "ls /opt/ocelot/dist/bundle",
      ].join("; "),
    );
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^v20\.(19|[2-9]\d)\./m);
    expect(out).toMatch(/iproute2/);
    expect(out).toMatch(/nf_tables/);
    expect(out).toMatch(/legacy/);
    expect(out).toMatch(/ipset v\d/);
    // WireGuard (FelixConfiguration wireguardEnabled): `wg` configures the device, and
    // wireguard-go is the device where the kernel has no wireguard module.
    expect(out).toMatch(/wireguard-tools v\d/);
    expect(out).toMatch(/wireguard-go v\d/);
    expect(out).toContain("ADDON");
    for (const f of [
      "ocelot.cjs",
      "ocelot.cjs.cache",
      "ocelot-bgpd.cjs",
      "ocelot-bgpd.cjs.cache",
      "ocelot-cni.cjs",
      "kubernetes-client-node.cjs",
    ])
      expect(out.split("\n"), f).toContain(f);
    expect(out).not.toMatch(/HAS-/);
    // node_modules holds what the bundles load at run time (scripts/externals.mjs), not what is
    // bundled (zod, commander, ...) nor dev dependencies.
    const modules = new Set(out.split("\n"));
    for (const dep of [...EXTERNAL_MODULES, ...Object.keys(EXTERNAL_FILES)])
      expect(modules.has(dep), dep).toBe(true);
    expect(modules.has("zod"), "zod is bundled").toBe(false);
    expect(modules.has("@kubernetes/client-node"), "bundled on its own").toBe(false);
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    for (const dev of Object.keys(pkg.devDependencies))
      expect(modules.has(dev), `dev dependency ${dev} in the image`).toBe(false);
  });
});
