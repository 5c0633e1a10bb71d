// WorkloadEndpoint names as Calico builds them, `<node>-<orchestrator>-<workload>-<endpoint>`
// with each '-' inside a part doubled, and the escape for a part a runtime may pass that no
// resource name can hold (podman's `pensive_beaver`, `Web_1`, a name with '/'), so that every
// container gets an endpoint. Pure. Not: who the pod is (plugin.ts podIdentity).
import { createHash } from "node:crypto";

/** Kubernetes' limit for a resource name (a DNS-1123 subdomain). */
export const MAX_NAME_LENGTH = 253;
/** Hex digits of the SHA-1 that tells escaped names apart (48 bits). */
const HASH_CHARS = 12;
/** The readable part kept of an escaped name. */
const MAX_SLUG = 40;
/** Between an escaped part's readable slug and its hash: a dash run no Calico part makes. */
const ESCAPE_MARK = "---";

/** A part Calico's form holds as it is: lowercase letters, digits, '.', '-', alphanumeric ends. */
const PLAIN_PART = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
/** '.' only between letters or digits (a DNS label never starts or ends with '-' or '.'). */
const BAD_DOTS = /\.\.|\.-|-\./;

/** Calico's escaping of one part: each '-' becomes "--". */
export function escapeDashes(part: string): string {
  return part.replaceAll("-", "--");
}

/** True when a part goes into the name as Calico writes it (dashes doubled), else it is escaped. */
export function isPlainPart(part: string): boolean {
  return PLAIN_PART.test(part) && !BAD_DOTS.test(part);
}

/**
 * One part of the name: Calico's form when the part is plain; otherwise a readable slug
 * (lowercased, each run of other characters one '.') then "---" then 12 hex digits of the
 * part's SHA-1: `pensive_beaver` -> `pensive.beaver---8c5d…`. A plain part's dashes come in
 * pairs and it ends in a letter or digit, so a run of exactly three dashes marks an escaped
 * part and no plain name can take an escaped one's place.
 */
export function namePart(part: string): string {
  if (isPlainPart(part)) return escapeDashes(part);
  const slug = part
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ".")
    .slice(0, MAX_SLUG)
    .replace(/^\.+|\.+$/g, "");
  const hash = createHash("sha1").update(part, "utf8").digest("hex").slice(0, HASH_CHARS);
  return `${slug || "x"}${ESCAPE_MARK}${hash}`;
}

/** The WorkloadEndpoint name from its four parts (each escaped as namePart says). */
export function buildWorkloadEndpointName(
  node: string,
  orchestrator: string,
  workload: string,
  endpoint: string,
): string {
  return [node, orchestrator, workload, endpoint].map(namePart).join("-");
}

/**
 * The parts of a name built from plain parts (Calico's ExtractDashSeparatedParms): a single
 * '-' separates, "--" is one '-'. Undefined when the name is not `count` such parts or holds an
 * escaped part.
 */
export function splitWorkloadEndpointName(name: string, count = 4): string[] | undefined {
  if (/(^|[^-])---([^-]|$)/.test(name)) return undefined;
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < name.length; i++) {
    if (name[i] !== "-") cur += name[i];
    else if (name[i + 1] === "-") {
      cur += "-";
      i++;
    } else {
      parts.push(cur);
      cur = "";
    }
  }
  parts.push(cur);
  return parts.length === count ? parts : undefined;
}
