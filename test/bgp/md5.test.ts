// TCP-MD5 (RFC 2385) of bgpd sessions, the pure parts: the per-peer password / passwordFile
// config (refused by name, the secret never in a message), password files, impact() on a key
// change, the key's socket address on a dual-stack socket, the struct tcp_md5sig bytes, the
// kernel's MD5 counters from /proc/net/netstat, and how status shows it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type BgpdConfig,
  ConfigError,
  impact,
  parseConfig,
  passwordFromFile,
  resolvePasswordFiles,
} from "../../src/bgp/config.js";
import { md5KeyAddress, parseTcpMd5Counters } from "../../src/bgp/io/transport.js";
import { formatStatus, type StatusSnapshot } from "../../src/bgp/status.js";
import { tcpMd5SigOption } from "../../src/lib/native.js";

const SECRET = "s3cr3t-Passw0rd";

function doc(peer: Record<string, unknown>) {
  return {
    asn: 64512,
    routerId: "10.0.0.1",
    peers: [{ address: "10.0.0.2", asn: 65000, ...peer }],
  };
}

const err = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("did not throw");
};

describe("peer password config", () => {
  it("accepts a password of 1 and of 80 bytes and keeps it as given", () => {
    expect(parseConfig(doc({ password: "x" })).peers[0]?.password).toBe("x");
    const p80 = "k".repeat(80);
    expect(parseConfig(doc({ password: p80 })).peers[0]?.password).toBe(p80);
    expect(parseConfig(doc({})).peers[0]?.password).toBeUndefined();
  });

  it("refuses an empty password and one over 80 bytes (counted in UTF-8), not showing it", () => {
    expect(err(() => parseConfig(doc({ password: "" })))).toBe(
      "Invalid bgpd config: peers[0].password: Too small: expected a password of >=1 bytes (value not shown)",
    );
    // 27 three-byte characters: 27 characters but 81 bytes.
    const long = "€".repeat(27);
    const m = err(() => parseConfig(doc({ password: long })));
    expect(m).toContain("peers[0].password: Too big: expected a password of <=80 bytes, got 81");
    expect(m).not.toContain("€");
    const m81 = err(() => parseConfig(doc({ password: `${SECRET}${"x".repeat(70)}` })));
    expect(m81).toContain("peers[0].password");
    expect(m81).not.toContain(SECRET);
  });

  it("refuses a password that is not a string, by name", () => {
    expect(err(() => parseConfig(doc({ password: 1234 })))).toBe(
      "Invalid bgpd config: peers[0].password: Invalid input: expected string, received number (value not shown)",
    );
  });

  it("refuses password and passwordFile together, the password masked in the message", () => {
    const m = err(() => parseConfig(doc({ password: SECRET, passwordFile: "/etc/x" })));
    expect(m).toContain("peers[0]: password and passwordFile are exclusive: set one (got {");
    expect(m).toContain('"password":"(not shown)","passwordFile":"/etc/x"');
    expect(m).not.toContain(SECRET);
  });

  it("refuses an empty passwordFile path", () => {
    expect(err(() => parseConfig(doc({ passwordFile: "" })))).toContain(
      'peers[0].passwordFile: Too small: expected string to have >=1 characters (got "")',
    );
  });
});

describe("resolvePasswordFiles()", () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-md5-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("strips one trailing newline (LF or CRLF) and nothing else", () => {
    expect(passwordFromFile(`${SECRET}\n`)).toBe(SECRET);
    expect(passwordFromFile(`${SECRET}\r\n`)).toBe(SECRET);
    expect(passwordFromFile(` ${SECRET} `)).toBe(` ${SECRET} `);
    expect(passwordFromFile(`${SECRET}\n\n`)).toBe(`${SECRET}\n`);
  });

  it("reads each peer's file into its password and keeps the path", () => {
    const f = join(dir, "peer.key");
    writeFileSync(f, `${SECRET}\n`);
    const cfg = resolvePasswordFiles(parseConfig(doc({ passwordFile: f })));
    expect(cfg.peers[0]).toMatchObject({ password: SECRET, passwordFile: f });
  });

  it("names the field and file of one it cannot read, all problems at once", () => {
    const empty = join(dir, "empty.key");
    writeFileSync(empty, "\n");
    const cfg = parseConfig({
      asn: 64512,
      routerId: "10.0.0.1",
      peers: [
        { address: "10.0.0.2", asn: 65000, passwordFile: join(dir, "missing.key") },
        { address: "10.0.0.3", asn: 65000, passwordFile: empty },
      ],
    });
    const m = err(() => resolvePasswordFiles(cfg));
    expect(m).toContain(`peers[0].passwordFile: cannot read "${join(dir, "missing.key")}": ENOENT`);
    expect(m).toContain(
      `peers[1].passwordFile: "${empty}": Too small: expected a password of >=1 bytes`,
    );
  });

  it("refuses a file holding more than 80 bytes without showing its content", () => {
    const f = join(dir, "long.key");
    writeFileSync(f, `${SECRET}${"y".repeat(80)}\n`);
    const m = err(() => resolvePasswordFiles(parseConfig(doc({ passwordFile: f }))));
    expect(m).toContain(`peers[0].passwordFile: "${f}": Too big`);
    expect(m).not.toContain(SECRET);
  });
});

describe("impact() of a password change", () => {
  const cfg = (peer: Record<string, unknown>): BgpdConfig => parseConfig(doc(peer));

  it("resets the session when the key changes, is added or removed", () => {
    expect(impact(cfg({ password: "a" }), cfg({ password: "b" })).changed).toEqual([
      { address: "10.0.0.2", impact: "reset", field: "password" },
    ]);
    expect(impact(cfg({}), cfg({ password: "b" })).changed[0]?.impact).toBe("reset");
    expect(impact(cfg({ password: "a" }), cfg({})).changed[0]?.impact).toBe("reset");
  });

  it("keeps the session when only the file's path changed, not its key", () => {
    const a = { ...cfg({ passwordFile: "/a" }) };
    const b = { ...cfg({ passwordFile: "/b" }) };
    const withKey = (c: BgpdConfig) => resolvePasswordFiles(c, () => `${SECRET}\n`);
    expect(impact(withKey(a), withKey(b)).changed).toEqual([
      { address: "10.0.0.2", impact: "none" },
    ]);
    expect(
      impact(
        withKey(a),
        resolvePasswordFiles(b, () => "other"),
      ).changed[0],
    ).toEqual({
      address: "10.0.0.2",
      impact: "reset",
      field: "password",
    });
  });
});

describe("TCP_MD5SIG socket option", () => {
  it("keys an IPv4 peer by its IPv4-mapped address on a dual-stack socket", () => {
    expect(md5KeyAddress("10.0.0.2", 4)).toBe("10.0.0.2");
    expect(md5KeyAddress("10.0.0.2", 6)).toBe("::ffff:10.0.0.2");
    expect(md5KeyAddress("fd00::2", 6)).toBe("fd00::2");
    expect(md5KeyAddress("fd00::2", 4)).toBeNull();
  });

  it("builds struct tcp_md5sig: sockaddr in 128 bytes, key length at 130, key at 136", () => {
    const b = tcpMd5SigOption("::ffff:10.0.0.2", SECRET);
    expect(b.length).toBe(216);
    expect(b.readUInt16LE(0)).toBe(10); // AF_INET6
    expect([...b.subarray(8, 24)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 2]);
    expect(b.readUInt16LE(130)).toBe(SECRET.length);
    expect(b.subarray(136, 136 + SECRET.length).toString()).toBe(SECRET);
    const v4 = tcpMd5SigOption("10.0.0.2", "");
    expect(v4.readUInt16LE(0)).toBe(2); // AF_INET
    expect([...v4.subarray(4, 8)]).toEqual([10, 0, 0, 2]);
    expect(v4.readUInt16LE(130)).toBe(0); // an empty key deletes the entry
  });
});

describe("parseTcpMd5Counters()", () => {
  it("reads TCPMD5Failure, TCPMD5Unexpected and TCPMD5NotFound from TcpExt", () => {
    const text = [
      "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted",
      "TcpExt: 0 3 4 5 9",
      "IpExt: InNoRoutes",
      "IpExt: 0",
    ].join("\n");
    expect(parseTcpMd5Counters(text)).toEqual({ failure: 5, unexpected: 4, notFound: 3 });
  });

  it("gives undefined for a kernel without the counters", () => {
    expect(parseTcpMd5Counters("TcpExt: SyncookiesSent\nTcpExt: 0\n")).toBeUndefined();
    expect(parseTcpMd5Counters("")).toBeUndefined();
  });
});

describe("formatStatus() with TCP-MD5", () => {
  it("marks signed sessions and prints the namespace's MD5 drop counters", () => {
    const s: StatusSnapshot = {
      routerId: "10.0.0.1",
      asn: 64512,
      listen: null,
      uptimeSeconds: 1,
      peers: [
        {
          address: "10.0.0.2",
          asn: 65000,
          localAsn: 64512,
          type: "external",
          state: "Active",
          uptimeSeconds: null,
          negotiated: null,
          prefixes: { received: 0, accepted: 0, advertised: 0 },
          messages: { in: 0, out: 0, updatesIn: 0 },
          sendQueueBytes: 0,
          establishedTransitions: 0,
          lastError: null,
          md5: true,
        },
      ],
      locRib: { ipv4: 0, ipv6: 0 },
      fib: { enabled: false, installed: 0, pending: 0, errors: 0 },
      tcpMd5: { failure: 7, unexpected: 0, notFound: 1 },
      memory: { rssMiB: 1, heapUsedMiB: 1, arrayBuffersMiB: 0, ribTypedMiB: 0 },
    };
    const text = formatStatus(s);
    expect(text).toMatch(/10\.0\.0\.2\s+65000\s+eBGP\s+Active\s+-\s+0\/0\/0\s+md5/);
    expect(text).toContain(
      "TCP MD5 drops in this namespace: 7 bad signature, 0 unexpected signature, 1 missing signature",
    );
  });
});
