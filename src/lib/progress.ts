// Progress lines for long CLI work, on stderr: on a terminal one line rewritten in place
// ("\r"), with `--progress` when not on a terminal one plain line at most every second; never
// with `--json` (its output must stay machine-read) and, without `--progress`, never when stderr
// is piped. Owns: when and how a line is drawn. Not: the work being counted.

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface ProgressOptions {
  /** `--progress` was given. */
  flag?: boolean;
  /** `--json` was given: no progress at all. */
  json?: boolean;
  stream?: ProgressStream;
  now?: () => number;
}

export class Progress {
  private done = 0;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private readonly started: number;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly tty: boolean;
  readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    o: ProgressOptions = {},
  ) {
    this.stream = o.stream ?? process.stderr;
    this.now = o.now ?? Date.now;
    this.tty = this.stream.isTTY === true;
    this.enabled = !o.json && (this.tty || o.flag === true);
    this.started = this.now();
  }

  /** Counts n more items done; draws when due (every 100 ms on a terminal, 1 s otherwise). */
  tick(n = 1): void {
    this.done += n;
    if (!this.enabled) return;
    const t = this.now();
    if (t - this.lastDraw < (this.tty ? 100 : 1000)) return;
    this.lastDraw = t;
    this.draw(t, false);
  }

  /** The final line (a terminal's line is ended). */
  finish(): void {
    if (this.enabled) this.draw(this.now(), true);
  }

  private draw(t: number, last: boolean): void {
    const pct = this.total > 0 ? Math.floor((this.done / this.total) * 100) : 100;
    const secs = (t - this.started) / 1000;
    const rate = secs > 0 ? ` ${Math.round(this.done / secs)}/s` : "";
    const line = `${this.label}: ${this.done}/${this.total} (${pct}%)${rate} ${secs.toFixed(1)} s`;
    if (this.tty) this.stream.write(`\r\x1b[K${line}${last ? "\n" : ""}`);
    else this.stream.write(`${line}\n`);
  }
}
