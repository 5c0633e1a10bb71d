// Field schemas shared by every resource kind: CIDRs, IPs, AS numbers, selectors, names,
// durations, ports, metadata, and the `unsupported()` marker for Calico fields we refuse.
// Owns field-level validation and its messages. Not: per-kind cross-field rules or defaults.
import ipaddr from "ipaddr.js";
import * as z from "zod";
import { own, pathParts, quote, toFieldIssues } from "./errors.js";
import { lazy } from "./lazy.js";
import { parseSelector, SelectorSyntaxError } from "./selector.js";

export type IpFamily = 4 | 6;

export interface ParsedCidr {
  family: IpFamily;
  /** The address part in canonical text (IPv6 per RFC 5952). */
  address: string;
  prefixLength: number;
  /** True when bits beyond the prefix length are set (`10.0.0.5/24`). */
  hostBits: boolean;
  /** The network in canonical text (`10.0.0.0/24`). */
  network: string;
}

function canonical(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  return addr.kind() === "ipv6" ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/** Parses `a.b.c.d/n` or `x::y/n`; undefined when it is not a CIDR. IPv4-mapped stays IPv6. */
export function parseCidr(text: string): ParsedCidr | undefined {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text);
  if (m === null) return undefined;
  const addrText = m[1] as string;
  const len = Number(m[2]);
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(addrText)) addr = ipaddr.IPv4.parse(addrText);
  else if (addrText.includes(":") && ipaddr.IPv6.isValid(addrText))
    addr = ipaddr.IPv6.parse(addrText);
  else return undefined;
  const family: IpFamily = addr.kind() === "ipv4" ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (len > max) return undefined;
  const bytes = addr.toByteArray();
  const net = bytes.slice();
  for (let bit = len; bit < max; bit++)
    net[bit >> 3] = (net[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  const hostBits = net.some((b, i) => b !== bytes[i]);
  const netAddr = ipaddr.fromByteArray(net);
  return {
    family,
    address: canonical(addr),
    prefixLength: len,
    hostBits,
    network: `${canonical(netAddr)}/${len}`,
  };
}

/** Parses a bare IPv4 or IPv6 address (dotted quad only for IPv4). */
export function parseIp(text: string): { family: IpFamily; address: string } | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text))
    return { family: 4, address: ipaddr.IPv4.parse(text).toString() };
  if (text.includes(":") && ipaddr.IPv6.isValid(text) && !text.includes("%")) {
    return { family: 6, address: ipaddr.IPv6.parse(text).toRFC5952String() };
  }
  return undefined;
}

/**
 * A CIDR string. Host bits are refused (Calico stores the network; we ask the user to say it),
 * unless `allowHostBits` (Node addresses are `10.0.0.5/24`). With `allowBareIp` an address alone
 * is taken as /32 or /128 (Calico's ParseCIDROrIP). The stored form is canonical.
 */
export function cidr(
  opts: { family?: IpFamily; allowHostBits?: boolean; allowBareIp?: boolean } = {},
) {
  return z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid CIDR`) })
    .transform((text, ctx) => {
      const bare = opts.allowBareIp === true ? parseIp(text.trim()) : undefined;
      const p = parseCidr(
        bare === undefined ? text.trim() : `${bare.address}/${bare.family === 4 ? 32 : 128}`,
      );
      if (p === undefined) {
        ctx.addIssue({ code: "custom", message: own(`${quote(text)} is not a valid CIDR`) });
        return z.NEVER;
      }
      if (opts.family !== undefined && p.family !== opts.family) {
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(text)} is not an IPv${opts.family} CIDR`),
        });
        return z.NEVER;
      }
      if (p.hostBits && opts.allowHostBits !== true) {
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(text)} has host bits set (the network is ${quote(p.network)})`),
        });
        return z.NEVER;
      }
      return opts.allowHostBits === true ? `${p.address}/${p.prefixLength}` : p.network;
    });
}

/** A CIDR or a bare IP (taken as /32 or /128), stored as a canonical network. */
export function cidrOrIp() {
  return z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid CIDR or IP address`) })
    .transform((text, ctx) => {
      const ip = parseIp(text.trim());
      const p = parseCidr(
        ip === undefined ? text.trim() : `${ip.address}/${ip.family === 4 ? 32 : 128}`,
      );
      if (p === undefined) {
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(text)} is not a valid CIDR or IP address`),
        });
        return z.NEVER;
      }
      if (p.hostBits) {
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(text)} has host bits set (the network is ${quote(p.network)})`),
        });
        return z.NEVER;
      }
      return p.network;
    });
}

/** A bare IP address, stored canonical. */
export function ipAddress(opts: { family?: IpFamily } = {}) {
  return z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid IP address`) })
    .transform((text, ctx) => {
      const p = parseIp(text.trim());
      if (p === undefined || (opts.family !== undefined && p.family !== opts.family)) {
        const what = opts.family === undefined ? "IP" : `IPv${opts.family}`;
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(text)} is not a valid ${what} address`),
        });
        return z.NEVER;
      }
      return p.address;
    });
}

/** Splits `IP`, `IPv4:port` or `[IPv6]:port` (BGPPeer.peerIP); undefined when malformed. */
export function parseIpPort(
  text: string,
): { family: IpFamily; address: string; port?: number } | undefined {
  const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (v6 !== null) {
    const ip = parseIp(v6[1] as string);
    if (ip === undefined || ip.family !== 6) return undefined;
    return withPort(ip, v6[2]);
  }
  const plain = parseIp(text);
  if (plain !== undefined) return plain;
  const v4 = /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (v4 === null) return undefined;
  const ip = parseIp(v4[1] as string);
  return ip === undefined ? undefined : withPort(ip, v4[2]);
}

function withPort(ip: { family: IpFamily; address: string }, port: string | undefined) {
  if (port === undefined) return ip;
  const n = Number(port);
  if (n < 1 || n > 65535) return undefined;
  return { ...ip, port: n };
}

export const ipPort = lazy(() =>
  z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid IP or IP:port`) })
    .refine((s) => parseIpPort(s) !== undefined, {
      error: (iss) => own(`${quote(iss.input)} is not a valid IP, IPv4:port or [IPv6]:port`),
    }),
);

export const AS_NUMBER_MAX = 4294967295;

/** Parses an AS number: 64512, "64512" or asdot "1.10" (RFC 5396); undefined if out of range. */
export function parseAsNumber(value: unknown): number | undefined {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^\d+$/.test(value)) n = Number(value);
  else if (typeof value === "string" && /^\d+\.\d+$/.test(value)) {
    const [hi, lo] = value.split(".").map(Number) as [number, number];
    if (hi > 65535 || lo > 65535) return undefined;
    n = hi * 65536 + lo;
  } else return undefined;
  return Number.isInteger(n) && n >= 1 && n <= AS_NUMBER_MAX ? n : undefined;
}

/** An AS number 1..4294967295 (number, numeric string or asdot), stored as a number. */
export const asNumber = lazy(() =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseAsNumber(v);
    if (n === undefined) {
      ctx.addIssue({
        code: "custom",
        message: own(`${quote(v)} is not a valid AS number (1..${AS_NUMBER_MAX})`),
      });
      return z.NEVER;
    }
    return n;
  }),
);

/** A Calico label selector, checked by parsing it. */
export const selector = lazy(() =>
  z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a selector string`) })
    .superRefine((text, ctx) => {
      try {
        parseSelector(text);
      } catch (err) {
        if (!(err instanceof SelectorSyntaxError)) throw err;
        ctx.addIssue({
          code: "custom",
          message: own(
            `${quote(text)} is not a valid selector (at offset ${err.offset}: ${err.reason})`,
          ),
        });
      }
    }),
);

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** True for a DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 chars. */
export function isDns1123Subdomain(name: string): boolean {
  return name.length <= 253 && name.split(".").every((part) => DNS1123_LABEL.test(part));
}

export function isDns1123Label(name: string): boolean {
  return name.length <= 63 && DNS1123_LABEL.test(name);
}

export const subdomainName = lazy(() =>
  z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid name`) })
    .refine(isDns1123Subdomain, {
      error: (iss) =>
        own(
          `${quote(iss.input)} is not a valid name (DNS-1123: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
        ),
    }),
);

export const labelName = lazy(() =>
  z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a valid name`) })
    .refine(isDns1123Label, {
      error: (iss) =>
        own(
          `${quote(iss.input)} is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`,
        ),
    }),
);

/** Kubernetes label key: optional DNS prefix + '/' + name of at most 63 chars. */
function isLabelKey(key: string): boolean {
  const slash = key.lastIndexOf("/");
  const name = slash < 0 ? key : key.slice(slash + 1);
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return false;
  return name.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name);
}

function isLabelValue(v: string): boolean {
  return v.length <= 63 && /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(v);
}

export const labels = lazy(() =>
  z.record(z.string(), z.string()).superRefine((map, ctx) => {
    for (const [k, v] of Object.entries(map)) {
      if (!isLabelKey(k))
        ctx.addIssue({
          code: "custom",
          path: [k],
          message: own(`${quote(k)} is not a valid label key`),
        });
      else if (!isLabelValue(v))
        ctx.addIssue({
          code: "custom",
          path: [k],
          message: own(`${quote(v)} is not a valid label value`),
        });
    }
  }),
);

/** Annotations: keys are Kubernetes qualified names; keys and values at most 256 KiB in all. */
export const annotations = lazy(() =>
  z.record(z.string(), z.string()).superRefine((map, ctx) => {
    let size = 0;
    for (const [k, v] of Object.entries(map)) {
      size += k.length + v.length;
      if (!isLabelKey(k.toLowerCase()))
        ctx.addIssue({
          code: "custom",
          path: [k],
          message: own(`${quote(k)} is not a valid annotation key`),
        });
    }
    if (size > 256 * 1024)
      ctx.addIssue({ code: "custom", message: own(`total size ${size} is above 262144 bytes`) });
  }),
);

/** Go duration (`metav1.Duration`): `120s`, `1m30s`, `500ms`; stored as given. */
export const duration = lazy(() =>
  z
    .string({ error: (iss) => own(`${quote(iss.input)} is not a duration such as "120s"`) })
    .refine((s) => parseDurationMs(s) !== undefined, {
      error: (iss) => own(`${quote(iss.input)} is not a duration such as "120s" or "1m30s"`),
    }),
);

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration string into milliseconds; undefined when malformed or negative. */
export function parseDurationMs(text: string): number | undefined {
  if (text === "0") return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  if (text.length === 0) return undefined;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (m === null) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = re.lastIndex;
  }
  return total;
}

/** An integer in [min, max], with a message that quotes the value and the range. */
export function intRange(min: number, max: number) {
  return z.unknown().transform((v, ctx) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      ctx.addIssue({
        code: "custom",
        message: own(`${quote(v)} is not an integer in ${min}..${max}`),
      });
      return z.NEVER;
    }
    return v;
  });
}

/** True when a port (number, "80", "80:90") is numeric, false for a named port. */
export function isNumericPort(p: number | string): boolean {
  return typeof p === "number" || /^\d+(:\d+)?$/.test(p);
}

/**
 * A port number, range or named port (Calico numorstring.Port): numbers and both ends of a range
 * in 1..65535 (validatePort: "port number must be between 1 and 65535"), a range ascending, a
 * name as Kubernetes' IANA_SVC_NAME.
 */
export const port = lazy(() =>
  z.union([z.number(), z.string()]).superRefine((v, ctx) => {
    const inRange = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
    const ok =
      typeof v === "number"
        ? inRange(v)
        : /^\d+:\d+$/.test(v)
          ? (() => {
              const [a, b] = v.split(":").map(Number) as [number, number];
              return inRange(a) && inRange(b) && a <= b;
            })()
          : /^\d+$/.test(v)
            ? inRange(Number(v))
            : /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) && v.length <= 15 && /[a-z]/.test(v);
    if (!ok)
      ctx.addIssue({
        code: "custom",
        message: own(
          `${quote(v)} is not a port (1..65535), an ascending port range "min:max" or a port name`,
        ),
      });
  }),
);

/** What Ocelot does with a Calico field, for the inventory (config/calico-api-inventory.json). */
export type FieldStatus =
  | { status: "refused"; reason: string }
  | { status: "stored"; reason: string };

/** Schemas marked as refused or stored-not-acted-on; unmarked fields are supported. */
export const FIELD_STATUS = new WeakMap<z.ZodType, FieldStatus>();

/**
 * A Calico field Ocelot accepts, validates and stores but does not act on yet: `ocelot apply`
 * names it in a warning. Only for fields whose absence of effect cannot weaken security.
 */
export function stored<T extends z.ZodType>(schema: T, reason: string): T {
  FIELD_STATUS.set(schema, { status: "stored", reason });
  return schema;
}

/**
 * A Calico field that Ocelot does not implement yet: absent is fine, present is refused with a
 * message naming it (never silently dropped). With `inner` (the field's own schema) the value is
 * validated first, so a bad value inside it is reported too, not hidden by the refusal.
 */
export function unsupported(what?: string, inner?: z.ZodType) {
  const schema = z
    .unknown()
    .superRefine((value, ctx) => {
      if (value === undefined) return;
      if (inner !== undefined) {
        const r = inner.safeParse(value, { reportInput: true });
        if (!r.success)
          for (const iss of toFieldIssues(r.error.issues))
            ctx.addIssue({
              code: "custom",
              path: iss.path === "" ? [] : pathParts(iss.path),
              message: own(iss.message),
            });
      }
      ctx.addIssue({
        code: "custom",
        message: own(
          `is a Calico field that Ocelot does not support yet${what === undefined ? "" : ` (${what})`}; got ${quote(value)}`,
        ),
      });
    })
    .optional();
  FIELD_STATUS.set(schema, { status: "refused", reason: what ?? "not supported yet" });
  return schema;
}

/** Object metadata, Kubernetes ObjectMeta as calicoctl accepts it. */
export function metadataSchema(opts: { namespaced: boolean; name?: z.ZodType<string> }) {
  return z
    .object({
      name: opts.name ?? subdomainName,
      namespace: opts.namespaced
        ? labelName.optional()
        : z.never({ error: own("must not be set: this kind is not namespaced") }).optional(),
      labels: labels.optional(),
      annotations: annotations.optional(),
      resourceVersion: z
        .union([z.string(), z.number()])
        .transform((v, ctx) => {
          const s = String(v);
          if (!/^\d+$/.test(s) || Number(s) < 1) {
            ctx.addIssue({
              code: "custom",
              message: own(`${quote(v)} is not a resource version (a positive integer)`),
            });
            return z.NEVER;
          }
          return s;
        })
        .optional(),
      uid: z.string().optional(),
      creationTimestamp: z.union([z.string(), z.null()]).optional(),
      generateName: unsupported(),
      generation: unsupported(),
      ownerReferences: unsupported(),
      finalizers: unsupported(),
      managedFields: unsupported(),
      deletionTimestamp: unsupported(),
      deletionGracePeriodSeconds: unsupported(),
      selfLink: unsupported(),
    })
    .strict();
}

export type Metadata = {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  uid?: string;
  creationTimestamp?: string | null;
};

/** RFC 3339 date-time, as the CRDs' `format: date-time` (Kubernetes' metav1.Time). */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * A resource's `status` of Kubernetes conditions (metav1.Condition, as IPPool's and Tier's in
 * Calico's CRDs: a list keyed by type). Written by Calico's controllers, so exported YAML carries
 * it: accepted when valid and stored as given; Ocelot writes none and acts on none.
 */
export const conditionsStatus = lazy(() =>
  stored(
    z
      .object({
        conditions: z
          .array(
            z
              .object({
                type: z
                  .string()
                  .max(316)
                  .regex(
                    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
                    { error: (iss) => own(`${quote(iss.input)} is not a condition type`) },
                  ),
                status: z.enum(["True", "False", "Unknown"]),
                lastTransitionTime: z.string().regex(DATE_TIME, {
                  error: (iss) => own(`${quote(iss.input)} is not a date-time`),
                }),
                reason: z
                  .string()
                  .min(1)
                  .max(1024)
                  .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/, {
                    error: (iss) => own(`${quote(iss.input)} is not a CamelCase reason`),
                  }),
                message: z.string().max(32768),
                observedGeneration: z.number().int().min(0).optional(),
              })
              .strict(),
          )
          .superRefine((list, ctx) => {
            const seen = new Set<string>();
            list.forEach((c, i) => {
              if (seen.has(c.type))
                ctx.addIssue({
                  code: "custom",
                  path: [i, "type"],
                  message: own(`${quote(c.type)} is listed twice (conditions are keyed by type)`),
                });
              seen.add(c.type);
            });
          })
          .optional(),
      })
      .strict()
      .optional(),
    "status conditions as Calico's controllers write them: kept as given; Ocelot writes none and acts on none",
  ),
);
