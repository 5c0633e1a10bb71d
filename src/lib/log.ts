// The logger interface the daemons' parts write to (pino's shape, so bgpd and the node daemon
// pass theirs), and one that drops everything. Owns: that interface only.
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
