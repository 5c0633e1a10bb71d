// Log levels per subsystem, changed while the daemon runs: `ocelot log-level bgp=debug` over the
// status socket, SIGUSR1 one step more verbose and SIGUSR2 one step quieter (every subsystem),
// and a log stream that survives its stdout being closed (EPIPE: lines are dropped, the daemon
// goes on). Owns: the level names, parsing `name=level` arguments, the pino children per
// subsystem. Not: what the subsystems log.
import { writeSync } from "node:fs";
import type { Logger } from "pino";

export const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type Level = (typeof LEVELS)[number];

/** `["bgp=debug", "node=info"]` -> {bgp: "debug", node: "info"}; throws naming a bad one. */
export function parseLevelArgs(args: readonly string[], subsystems: readonly string[]) {
  const out: Record<string, Level> = {};
  for (const a of args) {
    const m = /^([a-z]+)=([a-z]+)$/.exec(a);
    if (!m) throw new Error(`"${a}" is not subsystem=level (e.g. bgp=debug)`);
    const [, name, level] = m as unknown as [string, string, string];
    if (name !== "all" && !subsystems.includes(name))
      throw new Error(`"${name}" is not a subsystem (${[...subsystems, "all"].join(", ")})`);
    if (!(LEVELS as readonly string[]).includes(level))
      throw new Error(`"${level}" is not a level (${LEVELS.join(", ")})`);
    for (const s of name === "all" ? subsystems : [name]) out[s] = level as Level;
  }
  return out;
}

/** One step towards trace (+1) or towards fatal (-1), stopping at the ends. */
export function stepLevel(level: string, by: 1 | -1): Level {
  const i = (LEVELS as readonly string[]).indexOf(level);
  const next = Math.min(LEVELS.length - 1, Math.max(0, (i < 0 ? 3 : i) + by));
  return LEVELS[next] as Level;
}

/** The subsystems' loggers (children of root), and their levels changed at run time. */
export class SubsystemLogs {
  readonly loggers: Record<string, Logger>;

  constructor(
    private readonly root: Logger,
    readonly subsystems: readonly string[],
  ) {
    this.loggers = Object.fromEntries(
      subsystems.map((s) => [s, root.child({ subsystem: s }, { level: root.level })]),
    );
  }

  levels(): Record<string, string> {
    return Object.fromEntries(this.subsystems.map((s) => [s, this.loggers[s]?.level ?? ""]));
  }

  /** Sets levels; logs the change once (at warn, so that it shows at any level up to warn). */
  set(levels: Record<string, Level>, why: string): Record<string, string> {
    const before = this.levels();
    for (const [s, level] of Object.entries(levels)) {
      const l = this.loggers[s];
      if (l) l.level = level;
    }
    this.root.warn({ before, after: this.levels(), why }, "Log levels changed");
    return this.levels();
  }

  /** SIGUSR1 (+1, more verbose) / SIGUSR2 (-1): every subsystem one step. */
  step(by: 1 | -1, why: string): Record<string, string> {
    const next: Record<string, Level> = {};
    for (const s of this.subsystems) next[s] = stepLevel(this.loggers[s]?.level ?? "info", by);
    return this.set(next, why);
  }
}

/**
 * A pino destination on stdout that never throws: each line is written at once (as pino's own
 * synchronous destination does); a line the pipe cannot take now (EAGAIN) is dropped and
 * counted, and once the reader is gone (EPIPE, or any other error) every later line is dropped:
 * the daemon goes on without its log.
 */
export function stdoutSink(fd = 1) {
  const state = { broken: false, dropped: 0 };
  const sink = {
    write(line: string): void {
      if (state.broken) {
        state.dropped++;
        return;
      }
      try {
        const buf = Buffer.from(line);
        let off = 0;
        while (off < buf.length) off += writeSync(fd, buf, off);
      } catch (err) {
        state.dropped++;
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") state.broken = true;
      }
    },
  };
  process.stdout.on("error", () => {
    state.broken = true;
  });
  return { sink, state };
}
