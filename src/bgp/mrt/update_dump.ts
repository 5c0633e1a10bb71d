// The file side of BGP4MP dumps, as BIRD's `mrt` protocol and GoBGP's `mrt` dump do it: every
// UPDATE received is appended to `<dir>/updates.<UTC time>.mrt`, and a new file is started when
// the current one reaches `rotateBytes` or is `rotateMs` old. Writes are synchronous appends of
// whole records (a reader never sees half a record at a rotation). Owns: files and rotation.
// Not: the record bytes (bgp4mp.ts).
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Bgp4mpPeer } from "./bgp4mp.js";
import { bgp4mpMessage } from "./bgp4mp.js";

export interface UpdateDumpOptions {
  dir: string;
  /** Start a new file once this many bytes were written to the current one (default 64 MiB). */
  rotateBytes?: number;
  /** Start a new file once the current one is this old (default 15 min; 0: never by time). */
  rotateMs?: number;
  now?: () => number;
}

export class UpdateDump {
  private file: string | undefined;
  private bytes = 0;
  private openedAt = 0;
  /** Files started so far, oldest first. */
  readonly files: string[] = [];
  records = 0;
  errors = 0;

  constructor(private readonly o: UpdateDumpOptions) {
    mkdirSync(o.dir, { recursive: true });
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Appends one received message; an I/O error is counted, never thrown to the speaker. */
  write(peer: Bgp4mpPeer, message: Uint8Array, fourOctetAs: boolean): void {
    const now = this.now();
    const rec = bgp4mpMessage(Math.floor(now / 1000), peer, message, fourOctetAs);
    const maxBytes = this.o.rotateBytes ?? 64 * 1024 * 1024;
    const maxMs = this.o.rotateMs ?? 15 * 60_000;
    if (
      this.file === undefined ||
      (this.bytes > 0 && this.bytes + rec.length > maxBytes) ||
      (maxMs > 0 && now - this.openedAt >= maxMs)
    ) {
      const stamp = new Date(now)
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z");
      let name = join(this.o.dir, `updates.${stamp}.mrt`);
      if (this.files.includes(name))
        name = join(this.o.dir, `updates.${stamp}.${this.files.length}.mrt`);
      this.file = name;
      this.files.push(name);
      this.bytes = 0;
      this.openedAt = now;
    }
    try {
      appendFileSync(this.file, rec);
      this.bytes += rec.length;
      this.records++;
    } catch {
      this.errors++;
    }
  }
}
