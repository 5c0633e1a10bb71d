// Root-only unix sockets a daemon serves (the status socket, the CNI hand-off socket): the
// directory check, a stale socket from an earlier run replaced (one still answered is refused),
// listening with mode 0600 and unlinking on close. Not: any protocol spoken on them.
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import * as net from "node:net";
import { dirname } from "node:path";

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * The socket is root-only (0600), which protects nothing if another user can replace it: its
 * directory must belong to us or root and must not be writable by group or others (unless
 * sticky, as /tmp is). Checked at every start, also when someone else made the directory.
 */
export function checkSocketDir(dir: string, what = "Socket"): void {
  const st = lstatSync(dir);
  const me = process.getuid?.() ?? 0;
  if (!st.isDirectory())
    throw new Error(`${what} directory ${dir} is not a directory (a symbolic link?)`);
  if (st.uid !== me && st.uid !== 0)
    throw new Error(
      `${what} directory ${dir} belongs to uid ${st.uid}, not to this process (uid ${me}) or root: another user could replace the socket`,
    );
  const sticky = (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky)
    throw new Error(
      `${what} directory ${dir} is writable by ${st.mode & 0o020 ? "its group" : "others"} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}): another user could replace the socket; make it 0755`,
    );
}

/**
 * Makes path ready to listen on: its directory made (0755) and checked, a stale socket of an
 * earlier run removed; a socket something still answers on, or a path that is not a socket, is
 * refused naming `what`.
 */
export async function prepareSocketPath(path: string, what: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  checkSocketDir(dirname(path), what);
  if (existsSync(path) || isSymlink(path)) {
    const st = lstatSync(path);
    if (!st.isSocket() && !st.isFile())
      throw new Error(
        `${what} ${path} exists and is not a socket (a ${st.isSymbolicLink() ? "symbolic link" : "directory or device"}): remove it or choose another path`,
      );
    // A stale socket from a previous run; refuse if something still answers on it.
    const alive = await new Promise<boolean>((r) => {
      const c = net.connect(path);
      c.once("connect", () => {
        c.destroy();
        r(true);
      });
      c.once("error", () => r(false));
    });
    if (alive) throw new Error(`${what} ${path} is in use by another daemon`);
    unlinkSync(path);
  }
}

/** Listens on path with mode 0600 (no moment at a wider mode); close() also unlinks it. */
export async function listenRootOnly(
  server: net.Server,
  path: string,
): Promise<{ close(): Promise<void> }> {
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((r) =>
        server.close(() => {
          try {
            unlinkSync(path);
          } catch {}
          r();
        }),
      ),
  };
}
