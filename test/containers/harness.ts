// Real containers for the deployment tests: podman with the shared containers.conf (copied into
// a temporary directory), the shared Debian base image (made by the shared script when missing,
// kept in podman's storage), the project's images, and podman's Docker-compatible API on a
// private socket for docker-compose 1.29, ended by its PID. Owns only what it creates: images
// it tags, the API process, compose projects named with the run's prefix.
import { type ChildProcess, type SpawnSyncReturns, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";

export const root = new URL("../../", import.meta.url).pathname;

/** The base every image here is built FROM (public images are not reachable here). */
export const BASE_IMAGE = "localhost/debian:bookworm";

/** The images docker-compose.yml builds (tags as in that file). */
export const IMAGES = {
  ocelot: "localhost/ocelot:latest",
  etcd: "localhost/ocelot-etcd:latest",
  frr: "localhost/ocelot-frr:latest",
};

/** The shared lab folder: beside the checkout in CI (read-only), two levels up from a worktree. */
export const sharedContainers = ["../shared", "../../shared"]
  .map((d) => resolve(root, d, "lab/containers"))
  .find((d) => existsSync(join(d, "containers.conf")));

/** Debian's reference CNI plugins (package containernetworking-plugins). */
export const REFERENCE_CNI_PLUGINS = "/usr/lib/cni";

/**
 * A containers.conf in dir: the shared one, with podman's CNI backend (libcni) taking plugins
 * from pluginDirs and network configurations from confDir. Returns podman's environment for it.
 */
export function cniPodmanEnv(
  dir: string,
  pluginDirs: string[],
  confDir: string,
): NodeJS.ProcessEnv {
  const conf = join(dir, "containers.conf");
  copyFileSync(join(sharedContainers as string, "containers.conf"), conf);
  writeFileSync(
    conf,
    `${readFileSync(conf, "utf8")}\n[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = [${pluginDirs.map((d) => `"${d}"`).join(", ")}]\nnetwork_config_dir = "${confDir}"\n`,
  );
  return { ...process.env, CONTAINERS_CONF: conf };
}

function onPath(cmd: string): boolean {
  return ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"].some((d) =>
    existsSync(join(d, cmd)),
  );
}

/** Why real containers cannot run here, or undefined. */
export function containersUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root for podman";
  for (const cmd of ["podman", "runc", "docker-compose", "debootstrap", "nsenter"])
    if (!onPath(cmd)) return `${cmd} is not installed (scripts/setup.sh installs it)`;
  if (!sharedContainers) return "no ../shared/lab/containers (containers.conf, make-base-image.sh)";
  return undefined;
}

/**
 * Certificates the host added to its trust store (Debian's /usr/local/share/ca-certificates),
 * passed to builds as EXTRA_CA_CERTS: a TLS-intercepting proxy between a build and the npm
 * registry is trusted there as on the host. Empty when there are none.
 */
export function hostExtraCaCerts(): string {
  const dir = "/usr/local/share/ca-certificates";
  if (!existsSync(dir)) return "";
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".crt"))
    .sort()
    .map((f) => readFileSync(join(dir, f), "utf8").trim())
    .join("\n");
}

export class Podman {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "ocelot-podman-"));
    const conf = join(this.dir, "containers.conf");
    copyFileSync(join(sharedContainers as string, "containers.conf"), conf);
    this.env = { ...process.env, CONTAINERS_CONF: conf };
  }

  run(args: string[], opts: { timeout?: number; input?: string } = {}): SpawnSyncReturns<string> {
    return runSync("podman", args, { env: this.env, ...opts });
  }

  /** run() without blocking the test's event loop (steps in parallel), SIGKILLed at HANG_MS. */
  runAsync(
    args: string[],
    opts: { input?: string } = {},
  ): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const p = spawn("podman", args, { env: this.env, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d) => (stdout += d));
      p.stderr.on("data", (d) => (stderr += d));
      const timer = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
      p.on("error", reject);
      p.on("close", (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
      p.stdin.end(opts.input ?? "");
    });
  }

  /** Runs podman; throws with its stderr unless it exits 0. Returns stdout. */
  ok(args: string[], opts: { timeout?: number; input?: string } = {}): string {
    const r = this.run(args, opts);
    if (r.status !== 0)
      throw new Error(
        `podman ${args.slice(0, 4).join(" ")} ...: exit ${r.status ?? r.error?.message}: ${r.stderr}`,
      );
    return r.stdout;
  }

  imageExists(ref: string): boolean {
    return this.run(["image", "exists", ref]).status === 0;
  }

  /** Size in bytes as podman reports it (the image's unpacked layers). */
  imageSize(ref: string): number {
    return Number(this.ok(["image", "inspect", "--format", "{{.Size}}", ref]).trim());
  }

  /** The shared script: debootstrap + podman import, only when the image is missing. */
  ensureBaseImage(): void {
    if (this.imageExists(BASE_IMAGE)) return;
    const r = runSync(
      "bash",
      [join(sharedContainers as string, "make-base-image.sh"), BASE_IMAGE],
      {
        env: this.env,
        timeout: 1_200_000, // 20 min: a cold build
      },
    );
    if (r.status !== 0) throw new Error(`make-base-image.sh failed: ${r.stdout}\n${r.stderr}`);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Builds the project's image from the Dockerfile (FROM the shared base; layers of unchanged
 * sources come from podman's cache, so a second build is quick). Returns the seconds it took.
 */
export function buildOcelotImage(podman: Podman): number {
  const started = Date.now();
  podman.ok(
    [
      "build",
      "--build-arg",
      `BASE=${BASE_IMAGE}`,
      "--build-arg",
      `EXTRA_CA_CERTS=${hostExtraCaCerts()}`,
      "-t",
      IMAGES.ocelot,
      root,
    ],
    { timeout: 2_400_000 }, // 40 min: a cold image build on a loaded machine
  );
  return (Date.now() - started) / 1000;
}

/** `podman system service` on a private socket, for docker-compose; stop() ends it by PID. */
export class DockerApi {
  readonly socket: string;
  private proc: ChildProcess | undefined;

  constructor(private readonly podman: Podman) {
    this.socket = join(podman.dir, "podman.sock");
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    this.proc = spawn("podman", ["system", "service", "--time=0", this.host], {
      env: this.podman.env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    this.proc.stderr?.on("data", (d) => {
      stderr += String(d);
    });
    await waitFor("podman's API socket", () => {
      if (this.proc?.exitCode !== null) throw new Error(`podman system service exited: ${stderr}`);
      return existsSync(this.socket);
    });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.pid === undefined) return;
    const done = new Promise<void>((r) => p.once("exit", () => r()));
    process.kill(p.pid, "SIGTERM");
    const t = setTimeout(
      () => p.pid !== undefined && p.exitCode === null && p.kill("SIGKILL"),
      30_000,
    );
    await done;
    clearTimeout(t);
  }
}

/** docker-compose with this project's top-level file, a project name and its environment. */
export class Compose {
  constructor(
    readonly project: string,
    private readonly api: DockerApi,
    private readonly vars: Record<string, string>,
  ) {}

  run(args: string[], timeout?: number): SpawnSyncReturns<string> {
    return runSync(
      "docker-compose",
      ["-p", this.project, "-f", join(root, "docker-compose.yml"), ...args],
      {
        cwd: root,
        env: {
          ...process.env,
          DOCKER_HOST: this.api.host,
          COMPOSE_HTTP_TIMEOUT: "600",
          ...this.vars,
        },
        timeout,
      },
    );
  }

  ok(args: string[], timeout?: number): string {
    const r = this.run(args, timeout);
    if (r.status !== 0)
      throw new Error(`docker-compose ${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
    return r.stdout;
  }

  /** The container of a service (compose 1.29 names it <project>_<service>_1). */
  container(service: string): string {
    return `${this.project}_${service}_1`;
  }
}
