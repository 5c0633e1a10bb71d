// What configured peers cost `ocelot bgpd` in memory before any connects (as root): for each N
// given, bgpd in its own namespace with N passive iBGP route-reflector clients configured (none
// of them there), measured 5 s after it started: VmRSS as RssAnon + RssFile + RssShmem and the
// status socket's V8 heap figures (used / total), beside a bare `node` (nothing of ours loaded)
// measured first. The difference between two N is the per-peer cost of the session objects,
// timers and policies alone (docs/scale.md, "RSS in parts").
// With OCELOT_NODE_ARGS="--heapsnapshot-signal=SIGUSR2" and SNAPSHOT=1 it also writes a heap
// snapshot per N (in the directory it runs from) to compare by constructor.
// Run: npx tsx bench/bgpd_idle_memory.ts [--n 0,1000]
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { Netns } from "../test/helpers/netns.js";
import { PeerLab } from "../test/helpers/peers.js";
import { anonPartsLine } from "./rr_scale.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const ADDR = "10.212.0.1";
/** Peer i: 10.213.(i / 256).(i % 256), up to 65,536. */
const peerAddr = (i: number) => `10.213.${i >> 8}.${i & 255}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** VmRSS and its parts of a process, MiB, as one line. */
function parts(pid: number): string {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const mib = (k: string) =>
    (Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1]) / 1024).toFixed(1);
  return `VmRSS ${mib("VmRSS")} = RssAnon ${mib("RssAnon")} + RssFile ${mib("RssFile")} + RssShmem ${mib("RssShmem")} MiB`;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("bench/bgpd_idle_memory.ts needs root");
  const sizes = arg("n", "0,1000").split(",").map(Number);
  const bare = spawn(process.execPath, ["-e", "setInterval(()=>{},1e9)"], { stdio: "ignore" });
  try {
    await sleep(3000);
    console.log(`bare node: ${parts(bare.pid as number)}; load ${load()}`);
  } finally {
    bare.kill("SIGKILL");
  }
  const ns = Netns.create("idl");
  const lab = new PeerLab();
  try {
    ns.exec("ip", "link", "set", "lo", "up");
    ns.exec("ip", "addr", "add", `${ADDR}/16`, "dev", "lo");
    for (const n of sizes) {
      if (!(n >= 0 && n <= 65_536)) throw new Error(`--n: ${n} is not in 0..65536`);
      const oc = lab.startOcelot(
        ns,
        `n${n}`,
        {
          asn: 64512,
          routerId: ADDR,
          listen: { address: ADDR, port: 179 },
          clusterId: ADDR,
          peers: Array.from({ length: n }, (_, i) => ({
            address: peerAddr(i),
            asn: 64512,
            passive: true,
            routeReflectorClient: true,
          })),
          originate: [],
          fib: { enabled: false },
        },
        ["--log-level", "info"],
      );
      await sleep(5000);
      const mem = (oc.status() as unknown as { memory?: object }).memory;
      console.log(
        `peers=${n} ${parts(oc.pid)}, status memory ${JSON.stringify(mem)}; ${anonPartsLine(oc.pid)}; load ${load()}`,
      );
      if (process.env.SNAPSHOT) {
        lab.signal(oc.pid, "SIGUSR2");
        await sleep(15_000);
      }
      lab.stop(oc.pid);
    }
  } finally {
    lab.cleanup();
    ns.destroy();
  }
}

await main();
