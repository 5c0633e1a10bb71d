// One process of the multi-process CAS race: after "go" on stdin, increments the counter at KEY
// N times by compare-and-swap, retrying on conflict, then prints {"done":N,"conflicts":C}.
// Usage: node race_worker.mjs URL KEY N
// Plain JavaScript on the compiled dist/ (built by npm ci): eight of these start at once, and a
// TypeScript transform per process would cost more CPU than the race itself on a loaded machine.
import { openDatastore } from "../../dist/datastore/open.js";
import { ConflictError } from "../../dist/datastore/types.js";

const [url, key, nArg] = process.argv.slice(2);
if (!url || !key || !nArg) {
  process.stderr.write("usage: race_worker.mjs URL KEY N\n");
  process.exit(2);
}
const n = Number(nArg);
const store = await openDatastore(url);
process.stdout.write("ready\n");
await new Promise((resolve) => process.stdin.once("data", () => resolve()));

let done = 0;
let conflicts = 0;
let streak = 0;
let cur = await store.get(key);
const maxAttempts = n * 1000;
for (let attempt = 0; done < n && attempt < maxAttempts; attempt++) {
  if (!cur) throw new Error(`Counter "${key}" is missing`);
  try {
    cur = await store.update(key, String(Number(cur.value) + 1), cur.modRevision);
    done++;
    streak = 0;
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    conflicts++;
    cur = err.current;
    // A little jittered backoff, as real CAS loops (IPAM) do: less wasted work under contention.
    streak++;
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(streak, 4)));
  }
}
await store.close();
process.stdout.write(`${JSON.stringify({ done, conflicts })}\n`);
