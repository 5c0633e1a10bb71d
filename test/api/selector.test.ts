// Calico selector grammar: every operator parses, syntax errors carry the offset, evaluation.
import { describe, expect, it } from "vitest";
import { matchSelector, parseSelector, SelectorSyntaxError } from "../../src/api/selector.js";

describe("parseSelector()", () => {
  it("parses every operator of Calico's grammar", () => {
    const sel = parseSelector(
      `all() && has(zone) && !has(gpu) && a == "x" && b != 'y' && c in {"1", "2"} && d not in {} && e contains "mid" && f starts with "pre" && g ends with "suf" || (h == "z")`,
    );
    expect(sel.op).toBe("or");
  });
  it("treats an empty selector as all()", () => {
    expect(parseSelector("   ")).toEqual({ op: "all" });
  });
  it("throws SelectorSyntaxError with the offset", () => {
    for (const bad of [
      "a = 'b'",
      "a == ",
      "has(",
      "a in {'x'",
      "(a == 'b'",
      "a == 'b' b",
      "'x'",
      'a == "unterminated',
      "a ~ 'b'",
    ]) {
      expect(() => parseSelector(bad), bad).toThrow(SelectorSyntaxError);
    }
    try {
      parseSelector("a == 'b' &&");
    } catch (err) {
      expect((err as SelectorSyntaxError).offset).toBe(11);
    }
  });
});

describe("matchSelector()", () => {
  const labels = { role: "db", zone: "eu-west-1a", "projectcalico.org/namespace": "prod" };
  const m = (s: string) => matchSelector(parseSelector(s), labels);
  it("evaluates terms", () => {
    expect(m("all()")).toBe(true);
    expect(m("role == 'db'")).toBe(true);
    expect(m("role != 'db'")).toBe(false);
    expect(m("missing != 'db'")).toBe(true);
    expect(m("has(zone) && zone starts with 'eu-'")).toBe(true);
    expect(m("zone ends with '1b'")).toBe(false);
    expect(m("zone contains 'west'")).toBe(true);
    expect(m("role in {'web', 'db'}")).toBe(true);
    expect(m("role not in {'web', 'db'}")).toBe(false);
    expect(m("missing not in {'x'}")).toBe(true);
    expect(m("projectcalico.org/namespace == 'prod'")).toBe(true);
    expect(m("!(role == 'db') || zone == 'x'")).toBe(false);
    expect(m("global()")).toBe(false);
    expect(matchSelector(parseSelector("global()"), {}, { global: true })).toBe(true);
  });
});
