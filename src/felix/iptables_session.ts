// One long-lived `iptables-nft-restore --noflush` per network namespace and family, fed one
// table block (`*table … COMMIT`) per change: the incremental applier's way to write rules
// without a process start (and, in another namespace, without `ip netns exec`) per pass. The
// tool reads its input line by line and commits each block when it reads COMMIT, but says
// nothing when a commit is done; the kernel does: every nf_tables commit sends NFT_MSG_NEWGEN
// (the new generation, with the committing process's PID) to the NFNLGRP_NFTABLES group. A
// commit is done when that message with the tool's PID arrives; it failed when the tool exits
// instead (it prints `line N failed` and stops at the first error), or when neither happens
// within the command limit (the tool is then killed). A failed or exited session is dropped;
// the next commit starts a new one. The event socket is open only while a commit is awaited
// (so an idle session keeps no event loop alive and reads no one else's rule events), and the
// tool's process and pipes are unref'd. Only the nft backend: the legacy tool holds the xtables
// lock for as long as it runs. Owns: the tool's process and the event socket.
// Also the request that lists a family's nf_tables tables (NFT_MSG_GETTABLE), by which the full
// pass knows a namespace where iptables-nft has nothing to read back.
// Not: what to write (written.ts), the one-shot tools (apply.ts).
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { NetlinkSocket } from "../fib/netlink_socket.js";
import {
  forEachMessage,
  type MessageWriter,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  type NlMessage,
} from "../fib/rtnetlink.js";
import { NETLINK_NETFILTER } from "./ipset_netlink.js";

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_GETTABLE = 1;
const NFTA_TABLE_NAME = 1;
const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;
const NFTA_GEN_PROC_PID = 2;
const NFNLGRP_NFTABLES = 7;
const NFGENMSG_LEN = 4;
/** Room for the rule events of a pass's commit(s) arriving beside the one awaited. */
const EVENT_RCVBUF = 4 << 20;

/** The PID in an NFT_MSG_NEWGEN message's payload (after nfgenmsg), or undefined. */
export function newgenPid(buf: Buffer, off: number, end: number): number | undefined {
  let a = off + NFGENMSG_LEN;
  while (a + 4 <= end) {
    const len = buf.readUInt16LE(a);
    if (len < 4 || a + len > end) return undefined;
    if ((buf.readUInt16LE(a + 2) & 0x3fff) === NFTA_GEN_PROC_PID && len >= 8)
      return buf.readUInt32BE(a + 4);
    a += (len + 3) & ~3;
  }
  return undefined;
}

/** Appends a dump request of the nf_tables tables of one family (ip or ip6: iptables-nft's). */
export function writeNftTableDump(w: MessageWriter, seq: number, family: 4 | 6): void {
  const at = w.begin(
    (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
    NLM_F_REQUEST | NLM_F_DUMP,
    seq,
  );
  w.reserve(NFGENMSG_LEN);
  w.buf.writeUInt32LE(0, w.len);
  w.buf[w.len] = family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  w.len += NFGENMSG_LEN;
  w.finish(at);
}

/** The table's name in an NFT_MSG_NEWTABLE message (a table dump's answer), or undefined. */
export function nftTableName(m: NlMessage): string | undefined {
  if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE)) return undefined;
  let a = m.off + NFGENMSG_LEN;
  while (a + 4 <= m.end) {
    const len = m.buf.readUInt16LE(a);
    if (len < 4 || a + len > m.end) return undefined;
    if ((m.buf.readUInt16LE(a + 2) & 0x3fff) === NFTA_TABLE_NAME)
      return m.buf.toString("utf8", a + 4, a + len).replace(/\0.*$/s, "");
    a += (len + 3) & ~3;
  }
  return undefined;
}

export class RestoreSession {
  private child: ChildProcessWithoutNullStreams | undefined;
  private stderr = "";
  private exited: { code: number | null; signal: string | null } | undefined;
  private onExit: (() => void) | undefined;
  /** Lines the tool read before the block being committed (it numbers lines from its start). */
  private lines = 0;

  /**
   * `netns`: a namespace name (run under `ip netns exec`) or undefined for ours; `bin`:
   * iptables-nft-restore or ip6tables-nft-restore.
   */
  constructor(
    private readonly netns: string | undefined,
    private readonly bin: string,
    private readonly limitMs: number,
  ) {}

  /** Whether a tool process is running for this session. */
  get running(): boolean {
    return this.child !== undefined && this.exited === undefined;
  }

  private start(): ChildProcessWithoutNullStreams {
    const args = ["--noflush"];
    const [file, argv] = this.netns
      ? ["ip", ["netns", "exec", this.netns, this.bin, ...args]]
      : [this.bin, args];
    const child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    this.stderr = "";
    this.exited = undefined;
    this.lines = 0;
    // Events of a session already dropped (stop()) concern no one.
    const mine = () => this.child === child;
    child.stderr.on("data", (d) => {
      if (mine() && this.stderr.length < 4096) this.stderr += d;
    });
    child.stdout.on("data", () => {});
    child.stdin.on("error", () => {});
    child.on("error", (err) => {
      if (!mine()) return;
      this.stderr ||= err.message;
      this.exited ??= { code: null, signal: null };
      this.onExit?.();
    });
    child.on("close", (code, signal) => {
      if (!mine()) return;
      this.exited ??= { code, signal };
      this.onExit?.();
    });
    // An idle session keeps nothing alive; the tool ends when its input closes (our exit).
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr])
      (s as unknown as { unref?: () => void }).unref?.();
    return child;
  }

  /** Starts the tool now if it is not running (it waits for its first block). */
  warm(): void {
    if (!this.running) this.start();
  }

  /**
   * Writes one table block (ending in COMMIT) and resolves once the kernel committed it; a
   * failure rejects with the tool's words and drops the session.
   */
  commit(payload: string): Promise<void> {
    if (!this.running) this.start();
    const child = this.child as ChildProcessWithoutNullStreams;
    const pid = child.pid;
    return new Promise<void>((resolve, reject) => {
      let sock: NetlinkSocket | undefined;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: Error) => {
        if (timer) clearTimeout(timer);
        this.onExit = undefined;
        sock?.close();
        sock = undefined;
        if (err) {
          this.stop();
          reject(err);
        } else resolve();
      };
      const block = payload.endsWith("\n") ? payload : `${payload}\n`;
      const before = this.lines;
      // The tool's "line N failed" counts from its start: said of the block instead.
      const said = () =>
        this.stderr
          .trim()
          .replace(
            /line (\d+) failed/,
            (_, n: string) => `line ${Number(n) - before} of its block failed`,
          );
      const failed = (why: string) =>
        new Error(`${this.bin} (long-lived) ${why}${said() ? `: ${said()}` : ""}`);
      if (pid === undefined) {
        finish(failed("did not start"));
        return;
      }
      this.onExit = () =>
        finish(
          failed(
            `exited (${this.exited?.code ?? this.exited?.signal ?? "unknown"}) before its commit`,
          ),
        );
      if (this.exited) {
        this.onExit();
        return;
      }
      try {
        sock = new NetlinkSocket(
          NETLINK_NETFILTER,
          1 << (NFNLGRP_NFTABLES - 1),
          EVENT_RCVBUF,
          {
            onData: (buf) =>
              forEachMessage(buf, (m) => {
                if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) return;
                if (newgenPid(m.buf, m.off, m.end) === pid) finish();
              }),
            // A lost event may be ours: not knowing, the session is given up.
            onOverflow: () => finish(failed("commit not confirmed (event socket overflowed)")),
            onError: (err) => finish(failed(`commit not confirmed (${err.message})`)),
          },
          this.netns ?? "",
        );
      } catch (err) {
        finish(failed(`cannot watch for its commit (${(err as Error).message})`));
        return;
      }
      timer = setTimeout(
        () => finish(failed(`commit not confirmed within ${this.limitMs} ms`)),
        this.limitMs,
      );
      this.lines += block.split("\n").length - 1;
      child.stdin.write(block);
    });
  }

  /** Ends the tool (its input closed; killed if it does not go). */
  stop(): void {
    const child = this.child;
    this.child = undefined;
    if (!child || this.exited) return;
    child.stdin.end();
    const t = setTimeout(() => child.kill("SIGKILL"), 1000);
    t.unref();
    child.once("close", () => clearTimeout(t));
  }
}
