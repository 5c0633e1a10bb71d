// Max-prefix against a flooding peer (as root): a raw BGP peer (test/helpers/bgp_flooder.ts)
// announces --flood /24s (default 2,000,000) against a limit of --limit (default 100,000), to
// `ocelot bgpd` (`maxPrefixes`, FIB on) and, in the same run, to BIRD 2 (`receive limit N action
// restart`, exporting to its kernel protocol), each in its own namespaces. Prints, side by side:
// the RSS before, the peak (VmHWM) and 3 s after the session was closed, the UPDATEs the
// flooder got in before the close, and how the speaker closed it (NOTIFICATION code/subcode).
// Usage: npx tsx bench/max_prefix.ts [--flood 2000000] [--limit 100000] [--targets ocelot,bird]
import { readFileSync } from "node:fs";
import { FLOODER_AS, flooder } from "../test/helpers/bgp_flooder.js";
import { link, Netns } from "../test/helpers/netns.js";
import { PeerLab } from "../test/helpers/peers.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const FLOOD = Math.min(Number(arg("flood", "2000000")), 4_000_000);
const LIMIT = Number(arg("limit", "100000"));
const TARGETS = arg("targets", "ocelot,bird").split(",");

const SP = "10.255.24.1";
const FL = "10.255.24.2";

const mib = (pid: number, field: "VmRSS" | "VmHWM") => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1]) / 1024;
};

interface Row {
  target: string;
  before: number;
  peak: number;
  after: number;
  sent: number;
  closedWith: string;
  seconds: number;
}

async function one(target: string): Promise<Row> {
  const lab = new PeerLab();
  const sp = Netns.create("mxs");
  const fl = Netns.create("mxf");
  try {
    link(sp, "sp-fl", `${SP}/30`, fl, "fl-sp", `${FL}/30`);
    let pid: number;
    if (target === "ocelot") {
      pid = lab.startOcelot(sp, "ocelot", {
        asn: 64524,
        routerId: SP,
        peers: [
          {
            address: FL,
            asn: FLOODER_AS,
            passive: true,
            families: ["ipv4-unicast"],
            maxPrefixes: { "ipv4-unicast": { limit: LIMIT, restartTime: 600 } },
          },
        ],
        fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
      }).pid;
    } else {
      pid = lab.startBird(
        sp,
        "bird",
        `
router id ${SP};
protocol device { }
protocol kernel k4 { ipv4 { import none; export all; }; }
protocol bgp fl {
  local ${SP} as 64524;
  neighbor ${FL} as ${FLOODER_AS};
  passive on;
  ipv4 { import all; export none; receive limit ${LIMIT} action restart; };
}
`,
      ).pid;
    }
    const flood = flooder(lab.subdir("flooder"), fl);
    // A first session that sends nothing, so both are measured after a session's set-up.
    flood(SP, FL, 0);
    await new Promise((r) => setTimeout(r, 2000));
    const before = mib(pid, "VmRSS");
    const t0 = Date.now();
    const r = flood(SP, FL, FLOOD);
    const seconds = (Date.now() - t0) / 1000;
    await new Promise((res) => setTimeout(res, 3000));
    const n = r.notification;
    return {
      target,
      before,
      peak: mib(pid, "VmHWM"),
      after: mib(pid, "VmRSS"),
      sent: r.sent,
      closedWith: n ? `${n.code}/${n.subcode}` : "no NOTIFICATION",
      seconds,
    };
  } finally {
    lab.cleanup();
    sp.destroy();
    fl.destroy();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const t of TARGETS) rows.push(await one(t));
  console.log(
    `Max-prefix: a raw peer floods ${FLOOD.toLocaleString("en")} /24s against a limit of ${LIMIT.toLocaleString("en")} (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
  );
  console.log("target   closed  flood→close  UPDATEs in  RSS before  peak (VmHWM)  3 s after");
  for (const r of rows)
    console.log(
      `${r.target.padEnd(8)} ${r.closedWith.padEnd(7)} ${r.seconds.toFixed(1).padStart(9)} s  ${String(r.sent).padStart(10)}  ${r.before.toFixed(1).padStart(7)} MiB  ${r.peak.toFixed(1).padStart(9)} MiB  ${r.after.toFixed(1).padStart(6)} MiB`,
    );
  const o = rows.find((r) => r.target === "ocelot");
  const b = rows.find((r) => r.target === "bird");
  if (o && b)
    console.log(
      `ocelot/BIRD: peak growth ${((o.peak - o.before) / Math.max(0.1, b.peak - b.before)).toFixed(2)}×, peak RSS ${(o.peak / b.peak).toFixed(2)}×`,
    );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
