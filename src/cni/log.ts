// The CNI plugins' log file (Calico keeps one at /var/log/calico/cni/cni.log): where it is and
// how much goes in (`log_file_path`, `log_level` in the network configuration), one JSON line
// per entry. A failure's stack trace goes here, never into the error JSON a runtime shows.
// Owns: the settings (pure), the entry (pure) and appending it (the edge; a log that cannot be
// written never fails the invocation). Not: what an error says (ipam_plugin.ts).
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

export const DEFAULT_CNI_LOG_FILE = "/var/log/ocelot/cni/cni.log";
export const CNI_LOG_LEVELS = ["none", "error", "info", "debug"] as const;
export type CniLogLevel = (typeof CNI_LOG_LEVELS)[number];

export interface CniLogSettings {
  file: string;
  level: CniLogLevel;
}

/** What one invocation tells the log: its failure, if any. */
export interface CniLogFailure {
  code: number;
  msg: string;
  /** The stack (or a child plugin's stderr) behind msg. */
  stack?: string;
}

/**
 * The log settings of a network configuration: `log_file_path` (default
 * /var/log/ocelot/cni/cni.log) and `log_level` (error by default: failures with their stack;
 * info adds one line per ADD/DEL/CHECK; none writes nothing). Never throws: a configuration
 * that does not parse, or a bad value, gets the defaults (the plugin's own parse names the
 * problem to the runtime).
 */
export function cniLogSettings(stdin: string): CniLogSettings {
  let raw: Record<string, unknown> = {};
  try {
    const v = JSON.parse(stdin || "{}") as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) raw = v as Record<string, unknown>;
  } catch {}
  const file =
    typeof raw.log_file_path === "string" && raw.log_file_path.startsWith("/")
      ? raw.log_file_path
      : DEFAULT_CNI_LOG_FILE;
  const level = (CNI_LOG_LEVELS as readonly unknown[]).includes(raw.log_level)
    ? (raw.log_level as CniLogLevel)
    : "error";
  return { file, level };
}

/** Checks the log fields of a network configuration; the problem in words, or undefined. */
export function cniLogProblem(raw: Record<string, unknown>): string | undefined {
  const f = raw.log_file_path;
  if (f !== undefined && (typeof f !== "string" || !f.startsWith("/")))
    return `Field "log_file_path" must be an absolute path, got ${JSON.stringify(f)}`;
  const l = raw.log_level;
  if (l !== undefined && !(CNI_LOG_LEVELS as readonly unknown[]).includes(l))
    return `Field "log_level" must be one of ${CNI_LOG_LEVELS.join(", ")}, got ${JSON.stringify(l)}`;
  return undefined;
}

/** The log line of one invocation, or undefined when the level leaves it out. */
export function cniLogEntry(
  settings: CniLogSettings,
  at: Date,
  plugin: string,
  env: NodeJS.ProcessEnv,
  failure: CniLogFailure | undefined,
): string | undefined {
  if (settings.level === "none") return undefined;
  if (!failure && settings.level === "error") return undefined;
  const entry = {
    time: at.toISOString(),
    level: failure ? "error" : "info",
    plugin,
    pid: process.pid,
    command: env.CNI_COMMAND ?? "",
    containerID: env.CNI_CONTAINERID ?? "",
    ifname: env.CNI_IFNAME ?? "",
    netns: env.CNI_NETNS ?? "",
    args: env.CNI_ARGS ?? "",
    ...(failure
      ? { code: failure.code, msg: failure.msg, ...(failure.stack ? { stack: failure.stack } : {}) }
      : { msg: "ok" }),
  };
  return `${JSON.stringify(entry)}\n`;
}

/** Appends one line to the log file (its directory made 0755 when missing); errors are ignored. */
export function appendCniLog(file: string, line: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    appendFileSync(file, line, { mode: 0o640 });
  } catch {
    // A log that cannot be written must not turn a working ADD into a failed one.
  }
}

/** One line: newlines (a multi-line message from a library) become "; ". */
export function oneLine(text: string): string {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean)
    .join("; ");
}
