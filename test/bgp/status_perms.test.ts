// The status socket is root-only (issue 17, security): mode 0600, so another user's connect is
// refused by the kernel (tried as uid 65534 through setpriv, with a 0666 control that shows the
// same client gets in when the mode allows it); its directory is checked at every start, also
// when someone else made it (owned by another user, writable by group or others), and a
// symbolic link or directory at the socket's path is refused rather than replaced.
import { spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { queryStatus, serveStatus } from "../../src/bgp/status.js";
import { HANG_MS } from "../helpers/limits.js";

const dir = mkdtempSync(join(tmpdir(), "ocelot-statusperm-"));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const provider = {
  status: () => ({ routerId: "10.0.0.1" }) as never,
  routes: () => ({ routes: [] }) as never,
};

/** Connects to path as uid/gid 65534 (nobody); resolves with "connected" or the error code. */
function connectAsNobody(path: string): Promise<string> {
  const script = `const s=require("net").connect(${JSON.stringify(path)});s.on("connect",()=>{console.log("connected");s.destroy()});s.on("error",e=>console.log(e.code))`;
  return new Promise((resolve, reject) => {
    const p = spawn(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    const hang = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
    p.on("error", reject);
    p.on("close", () => {
      clearTimeout(hang);
      if (!out.trim()) reject(new Error(`no answer from the client: ${err}`));
      else resolve(out.trim());
    });
  });
}

describe.skipIf(process.getuid?.() !== 0)("status socket permissions (as root)", () => {
  it("refuses another user's connect, and lets the same client in only when the mode allows", async () => {
    const sub = join(dir, "run");
    mkdirSync(sub, { mode: 0o755 });
    const path = join(sub, "bgpd.sock");
    const srv = await serveStatus(path, provider);
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(await connectAsNobody(path)).toBe("EACCES");
      expect(await queryStatus(path, "status", HANG_MS)).toEqual({ routerId: "10.0.0.1" });
      chmodSync(path, 0o666); // the control: the same client, a permissive mode
      expect(await connectAsNobody(path)).toBe("connected");
    } finally {
      await srv.close();
    }
  });

  it("refuses a directory that another user owns or that group or others may write", async () => {
    const open = join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    await expect(serveStatus(join(open, "s.sock"), provider)).rejects.toThrow(
      `Status socket directory ${open} is writable by its group (mode 0777): another user could replace the socket; make it 0755`,
    );
    chmodSync(open, 0o757);
    await expect(serveStatus(join(open, "s.sock"), provider)).rejects.toThrow(
      "is writable by others (mode 0757)",
    );
    chmodSync(open, 0o1777); // sticky, as /tmp: others cannot replace our socket
    const srv = await serveStatus(join(open, "s.sock"), provider);
    await srv.close();

    const theirs = join(dir, "theirs");
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, 65534, 65534);
    await expect(serveStatus(join(theirs, "s.sock"), provider)).rejects.toThrow(
      `Status socket directory ${theirs} belongs to uid 65534, not to this process (uid 0) or root`,
    );
  });

  it("refuses a symbolic link or a directory at the socket's path instead of replacing it", async () => {
    const sub = join(dir, "links");
    mkdirSync(sub, { mode: 0o755 });
    const target = join(dir, "elsewhere");
    mkdirSync(target);
    symlinkSync(join(target, "x.sock"), join(sub, "bgpd.sock"));
    await expect(serveStatus(join(sub, "bgpd.sock"), provider)).rejects.toThrow(
      "exists and is not a socket (a symbolic link)",
    );
    mkdirSync(join(sub, "d.sock"));
    await expect(serveStatus(join(sub, "d.sock"), provider)).rejects.toThrow(
      "exists and is not a socket (a directory or device)",
    );
  });
});
