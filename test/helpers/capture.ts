// tshark as a test's witness on the wire: started in a namespace with the caller's filter and
// fields (it must stop by itself: `-c` packets or `-a duration:`), a sender run once it captures
// and again each second until it stops (a capture filter may attach after the first packets),
// and the lines it printed. Used where the kernel's own counters cannot tell a header field.
import { type ChildProcess, spawn } from "node:child_process";
import { type Netns, waitFor } from "./netns.js";

/**
 * Runs tshark with `args` in `ns` (`-l` added), `send(true)` once it captures, `send(false)` each
 * second after until it ends; returns its lines, fields joined by one space. The process goes in
 * `children` so the test's teardown can end it.
 */
export async function tsharkWhile(
  ns: Netns,
  args: string[],
  send: (first: boolean) => void,
  children: ChildProcess[],
): Promise<string[]> {
  const [cmd, argv] = ns.wrap("tshark", ...args, "-l");
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  let done = false;
  const closed = new Promise<void>((resolve) =>
    child.on("close", () => {
      done = true;
      resolve();
    }),
  );
  await waitFor(`tshark capturing in ${ns.name}`, () =>
    /Capturing on|Capture started/.test(err) ? true : undefined,
  );
  send(true);
  const again = setInterval(() => {
    if (!done) send(false);
  }, 1000);
  await closed;
  clearInterval(again);
  return out
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.trim().split(/\s+/).join(" "));
}
