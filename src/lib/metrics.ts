// Prometheus text exposition format 0.0.4, pure and without a dependency: metric families
// (counter or gauge, HELP and TYPE lines, labelled samples) rendered to text, with names checked
// and label values and HELP text escaped as the format requires. Not: where the numbers come
// from (daemon_metrics.ts) or serving them (health_server.ts).

export type MetricType = "counter" | "gauge";

export type Labels = Readonly<Record<string, string | number>>;

export interface Sample {
  labels?: Labels;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A label value: backslash, double quote and line feed escaped. */
export function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A sample value as Go's ParseFloat reads it: NaN, +Inf, -Inf or a decimal number. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

function labelText(name: string, labels: Labels | undefined): string {
  if (!labels) return "";
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  const parts = keys.map((k) => {
    if (!LABEL_NAME.test(k) || k.startsWith("__"))
      throw new Error(`Metric ${name}: label name "${k}" is not a valid Prometheus label name`);
    return `${k}="${escapeLabelValue(String(labels[k]))}"`;
  });
  return `{${parts.join(",")}}`;
}

function check(f: MetricFamily, seen: Set<string>): void {
  if (!METRIC_NAME.test(f.name))
    throw new Error(`Metric name "${f.name}" is not a valid Prometheus metric name`);
  if (seen.has(f.name)) throw new Error(`Metric ${f.name} is defined twice`);
  seen.add(f.name);
  if (f.type === "counter") {
    for (const s of f.samples)
      if (s.value < 0) throw new Error(`Counter ${f.name} has a negative value ${s.value}`);
  }
}

/**
 * Renders families in the order given, samples in their order. Throws, naming the metric, on an
 * invalid name, a family defined twice or a negative counter; nothing is returned half rendered.
 */
export function renderMetrics(families: readonly MetricFamily[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of families) {
    check(f, seen);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    const lines = new Set<string>();
    for (const s of f.samples) {
      const series = `${f.name}${labelText(f.name, s.labels)}`;
      if (lines.has(series)) throw new Error(`Metric ${series} has two samples`);
      lines.add(series);
      out.push(`${series} ${formatValue(s.value)}`);
    }
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}

/** Collects families in order: `counter(...)` and `gauge(...)`, then `render()`. */
export class MetricsRegistry {
  readonly families: MetricFamily[] = [];

  counter(name: string, help: string, samples: Sample[] | number): this {
    return this.add("counter", name, help, samples);
  }

  gauge(name: string, help: string, samples: Sample[] | number): this {
    return this.add("gauge", name, help, samples);
  }

  render(): string {
    return renderMetrics(this.families);
  }

  private add(type: MetricType, name: string, help: string, samples: Sample[] | number): this {
    this.families.push({
      name,
      help,
      type,
      samples: typeof samples === "number" ? [{ value: samples }] : samples,
    });
    return this;
  }
}
