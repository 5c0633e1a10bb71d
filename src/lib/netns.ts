// Hosts in Linux network namespaces, for the demo and the tests: create with a name prefix,
// veth links, commands inside a namespace, JSON read-back of the kernel, and cleanup that kills
// (by PID) what runs inside before deleting. Owns nothing outside the namespaces it created.
import { execFileSync, spawnSync } from "node:child_process";

/** Why namespaces cannot be used here, or undefined when they can (root with `ip netns`). */
/** A command's limit: these are short commands (ip, sysctl, ping), so only a hang reaches it. */
const COMMAND_LIMIT_MS = 120_000;

export function netnsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root for ip netns";
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8", timeout: COMMAND_LIMIT_MS });
  if (r.error || r.status !== 0) return `ip netns unavailable: ${r.error?.message ?? r.stderr}`;
  return undefined;
}

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: "utf8",
    input,
    stdio: ["pipe", "pipe", "pipe"],
    timeout: COMMAND_LIMIT_MS,
    killSignal: "SIGKILL",
  });
}

export class Netns {
  constructor(readonly name: string) {}

  /** Creates namespace `name` with lo up and forwarding on. */
  static add(name: string): Netns {
    sh("ip", ["netns", "add", name]);
    const ns = new Netns(name);
    ns.ip("link", "set", "lo", "up");
    ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=1");
    ns.exec("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
    return ns;
  }

  /** Runs `ip -n NAME ...args` and returns stdout. */
  ip(...args: string[]): string {
    return sh("ip", ["-n", this.name, ...args]);
  }

  /** Runs `ip -j -n NAME ...args` and parses the JSON. */
  ipJson<T = unknown>(...args: string[]): T {
    const out = sh("ip", ["-j", "-n", this.name, ...args]).trim();
    return (out === "" ? [] : JSON.parse(out)) as T;
  }

  /** Runs a command inside the namespace and returns stdout. */
  exec(cmd: string, ...args: string[]): string {
    return sh("ip", ["netns", "exec", this.name, cmd, ...args]);
  }

  /** Arguments that run cmd inside this namespace, for spawn(). */
  wrap(cmd: string, ...args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.name, cmd, ...args]];
  }

  /** PIDs of processes running inside the namespace. */
  pids(): number[] {
    const out =
      spawnSync("ip", ["netns", "pids", this.name], { encoding: "utf8", timeout: COMMAND_LIMIT_MS })
        .stdout ?? "";
    return out.split(/\s+/).filter(Boolean).map(Number);
  }

  /** Kills (TERM, then KILL) what runs inside, then deletes the namespace. Never throws. */
  destroy(): void {
    for (const sig of ["SIGTERM", "SIGKILL"] as const) {
      const pids = this.pids();
      for (const pid of pids) {
        try {
          process.kill(pid, sig);
        } catch {}
      }
      if (pids.length === 0) break;
      const deadline = Date.now() + 2000;
      while (this.pids().length > 0 && Date.now() < deadline) sleepSync(50);
    }
    spawnSync("ip", ["netns", "del", this.name], { timeout: COMMAND_LIMIT_MS });
  }
}

/** Connects a and b with a veth pair created inside them; addresses in CIDR form (optional). */
export function link(
  a: Netns,
  ifA: string,
  addrA: string | undefined,
  b: Netns,
  ifB: string,
  addrB: string | undefined,
): void {
  a.ip("link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.name);
  if (addrA) a.ip("addr", "add", addrA, "dev", ifA);
  if (addrB) b.ip("addr", "add", addrB, "dev", ifB);
  a.ip("link", "set", ifA, "up");
  b.ip("link", "set", ifB, "up");
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls fn until it returns a truthy value, or throws after timeoutMs. */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
