// Progress of work done in named steps (the demo's phases), on stderr, by progress.ts's rules: on
// a terminal one line rewritten in place with the step being waited for and the time so far
// (redrawn every 100 ms, so a long wait is seen to be one), cleared before each line the command
// prints to stdout and ended at the finish; with `--progress` off a terminal one plain line per
// step (and a step's count at most every second, and its last); never with `--json`, and without `--progress`
// never when stderr is piped. Owns: when and how the line is drawn. Not: the steps themselves.
import type { ProgressOptions, ProgressStream } from "./progress.js";

export class StepProgress {
  private index = 0;
  private name = "";
  private detail = "";
  private lastPlain = Number.NEGATIVE_INFINITY;
  private lastCount = Number.NEGATIVE_INFINITY;
  private drawn = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly started: number;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly tty: boolean;
  readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    o: ProgressOptions & { redraw?: boolean } = {},
  ) {
    this.stream = o.stream ?? process.stderr;
    this.now = o.now ?? Date.now;
    this.tty = this.stream.isTTY === true;
    this.enabled = !o.json && (this.tty || o.flag === true);
    this.started = this.now();
    if (this.enabled && this.tty && o.redraw !== false) {
      this.timer = setInterval(() => this.draw(), 100);
      this.timer.unref();
    }
  }

  /** The next step begins (what is waited for now). */
  step(name: string): void {
    this.index++;
    this.name = name;
    this.detail = "";
    if (!this.enabled) return;
    if (this.tty) this.draw();
    else this.plain(true);
  }

  /** A count within the step ("12/21"): drawn every 100 ms on a terminal, 1 s otherwise. */
  count(done: number, of: number): void {
    this.detail = `${done}/${of}`;
    if (!this.enabled) return;
    const t = this.now();
    if (!this.tty) this.plain(done === of);
    else if (t - this.lastCount >= 100 || done === of) {
      this.lastCount = t;
      this.draw();
    }
  }

  /**
   * A line for stdout, written by `write` with the terminal's progress line cleared first and
   * drawn again after (stdout and stderr share the terminal).
   */
  around(write: () => void): void {
    if (this.enabled && this.tty && this.drawn) this.stream.write("\r\x1b[K");
    write();
    if (this.enabled && this.tty && this.drawn) this.draw();
  }

  /** Stops redrawing; a terminal's line is cleared (the command's report follows on stdout). */
  finish(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.enabled && this.tty && this.drawn) this.stream.write("\r\x1b[K");
    this.drawn = false;
  }

  private text(): string {
    const secs = ((this.now() - this.started) / 1000).toFixed(1);
    const detail = this.detail ? ` ${this.detail}` : "";
    return `${this.label}: [${this.index}/${this.total}] ${this.name}${detail}... ${secs} s`;
  }

  private draw(): void {
    if (!this.enabled || !this.tty || this.index === 0) return;
    this.stream.write(`\r\x1b[K${this.text()}`);
    this.drawn = true;
  }

  private plain(force: boolean): void {
    const t = this.now();
    if (!force && t - this.lastPlain < 1000) return;
    this.lastPlain = t;
    this.stream.write(`${this.text()}\n`);
  }
}
