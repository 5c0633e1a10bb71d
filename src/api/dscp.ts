// DSCP values as Calico's API takes them (numorstring.DSCP): a number 0..63, the same as a
// string of digits, or one of the RFC 2474/2597/3246 names (DF, EF, AF11..AF43, CS0..CS6), in
// any case. Pure: the value's number, or undefined when it is none of these.
// Not: the schema that uses it (node.ts), the marking (src/felix/dscp.ts).

/** Calico's named code points (numorstring.AllDSCPValues). */
export const DSCP_NAMES: Readonly<Record<string, number>> = {
  DF: 0,
  EF: 46,
  AF11: 10,
  AF12: 12,
  AF13: 14,
  AF21: 18,
  AF22: 20,
  AF23: 22,
  AF31: 26,
  AF32: 28,
  AF33: 30,
  AF41: 34,
  AF42: 36,
  AF43: 38,
  CS0: 0,
  CS1: 8,
  CS2: 16,
  CS3: 24,
  CS4: 32,
  CS5: 40,
  CS6: 48,
};

/** The code point of a DSCP value (number, digits or name), or undefined when it is invalid. */
export function dscpValue(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 && v <= 63 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const t = v.trim();
  // Uint8OrString: a string of digits is its number (a uint8, then checked against 63).
  if (/^[0-9]+$/.test(t)) return dscpValue(Number(t));
  return DSCP_NAMES[t.toUpperCase()];
}
