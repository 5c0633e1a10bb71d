// A regular expression written for Go's regexp package (RE2 syntax, as Calico's fields such as
// FelixConfiguration mtuIfacePattern are) as a JavaScript RegExp (pure). Not: matching.

/**
 * A pattern in Go's regexp (RE2) syntax as a JavaScript RegExp: a leading flag group `(?i)`,
 * `(?s)`, `(?m)` becomes the RegExp's flags; what RE2 does not have (lookaround,
 * backreferences) is refused, as Go's regexp.Compile refuses it. Throws with the reason.
 */
export function compileGoRegexp(pattern: string): RegExp {
  let body = pattern;
  let flags = "";
  const lead = /^\(\?([a-zA-Z]+)\)/.exec(body);
  if (lead) {
    for (const f of lead[1] as string) {
      if (f === "i" || f === "m" || f === "s") {
        if (!flags.includes(f)) flags += f;
      } else throw new Error(`flag "${f}" is not supported`);
    }
    body = body.slice(lead[0].length);
  }
  if (/\(\?<?[=!]/.test(body)) throw new Error("lookaround is not supported (RE2)");
  if (/\\[1-9]|\\k</.test(body)) throw new Error("backreferences are not supported (RE2)");
  try {
    return new RegExp(body, flags);
  } catch (err) {
    throw new Error((err as Error).message.replace(/^Invalid regular expression: /, ""));
  }
}
