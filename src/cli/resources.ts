// `ocelot apply|create|replace|get|delete`: resources from files or stdin to the datastore and
// back, like calicoctl. Owns reading the input, error messages per file and document, exit codes
// and output formats (table, wide, yaml, json). Not: validation rules (src/api) or storage.
import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import { stringify as toYaml } from "yaml";
import {
  describe as describeResource,
  ResourceClient,
  ResourceError,
  refuseReadOnly,
  type Validated,
  type WriteMode,
} from "../api/client.js";
import { DocumentSyntaxError, parseDocuments } from "../api/documents.js";
import { ValidationError } from "../api/errors.js";
import { storedFields } from "../api/inventory.js";
import {
  type Column,
  DEFAULT_NAMESPACE,
  KINDS,
  type KindInfo,
  type Resource,
  resolveKindName,
  validateResource,
} from "../api/registry.js";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { type Datastore, UnavailableError } from "../datastore/types.js";
import { Progress } from "../lib/progress.js";
import { CliError } from "./main.js";

const USAGE = 2;

type StoreOptions = DatastoreCliOptions;

/** Opens the datastore named by --datastore / OCELOT_DATASTORE / the default embedded file. */
async function openStore(opts: StoreOptions): Promise<Datastore> {
  try {
    return await openDatastoreFromCli(opts);
  } catch (err) {
    if (err instanceof RangeError) throw new CliError(err.message, USAGE);
    if (err instanceof UnavailableError) throw new CliError(err.message);
    throw err;
  }
}

async function withClient<T>(
  opts: StoreOptions,
  fn: (client: ResourceClient) => Promise<T>,
): Promise<T> {
  const store = await openStore(opts);
  try {
    return await fn(new ResourceClient(store));
  } catch (err) {
    if (err instanceof UnavailableError) throw new CliError(err.message);
    throw err;
  } finally {
    await store.close();
  }
}

/** One document of the input, validated, with its label for messages. */
interface InputDoc extends Validated {
  where: string;
}

function readSource(file: string): string {
  try {
    return readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new CliError(
      `Cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

/**
 * Reads, parses and validates every document of every file. Any error anywhere refuses the
 * whole input before the datastore is opened, so nothing is written.
 */
function readInput(files: string[]): InputDoc[] {
  const docs: InputDoc[] = [];
  const errors: string[] = [];
  for (const file of files) {
    const name = file === "-" ? "<stdin>" : file;
    const text = readSource(file);
    let parsed: ReturnType<typeof parseDocuments>;
    try {
      parsed = parseDocuments(text);
    } catch (err) {
      if (!(err instanceof DocumentSyntaxError)) throw err;
      errors.push(`${name}: ${err.message}`);
      continue;
    }
    if (parsed.length === 0) errors.push(`${name}: no resources found`);
    for (const doc of parsed) {
      const where = `${name}: ${doc.label}`;
      try {
        docs.push({ where, ...validateResource(doc.value) });
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        for (const issue of err.issues)
          errors.push(`${where}: ${issue.path === "" ? "" : `${issue.path}: `}${issue.message}`);
      }
    }
  }
  const seen = new Map<string, string>();
  for (const d of docs) {
    const id = `${d.info.plural}/${d.resource.metadata.namespace ?? ""}/${d.resource.metadata.name}`;
    const first = seen.get(id);
    if (first !== undefined) errors.push(`${d.where}: ${describeOf(d)} is also in ${first}`);
    else seen.set(id, d.where);
  }
  if (errors.length > 0) refuse(errors);
  for (const d of docs)
    for (const w of storedFields(d.info, d.resource))
      process.stderr.write(`warning: ${d.where}: ${w}\n`);
  return docs;
}

function describeOf(d: Validated): string {
  return describeResource(d.info, d.resource.metadata.name, d.resource.metadata.namespace);
}

function refuse(errors: string[]): never {
  throw new CliError(`${errors.join("\n")}\nNothing was written.`);
}

const PAST: Record<WriteMode, string> = { create: "created", update: "replaced", apply: "applied" };

async function writeCommand(
  mode: WriteMode,
  opts: StoreOptions & { filename: string[]; progress?: boolean },
): Promise<void> {
  const docs = readInput(opts.filename);
  await withClient(opts, async (client) => {
    const errors: string[] = [];
    const checking = new Progress("checking", docs.length, { flag: opts.progress });
    for (const d of docs) {
      try {
        await client.check(mode, d, docs);
      } catch (err) {
        if (!(err instanceof ResourceError)) throw err;
        errors.push(`${d.where}: ${err.message}`);
      }
      checking.tick();
    }
    checking.finish();
    if (errors.length > 0) refuse(errors);
    const writing = new Progress("writing", docs.length, { flag: opts.progress });
    for (const d of docs) {
      try {
        const r = await client.writeValidated(mode, d);
        process.stdout.write(
          `${PAST[mode]} ${describeOf(d)} (resourceVersion ${r.metadata.resourceVersion})\n`,
        );
        writing.tick();
      } catch (err) {
        if (!(err instanceof ResourceError)) throw err;
        // Another writer changed the store between the check and this write.
        throw new CliError(
          `${d.where}: ${err.message}\nStopped: the documents before this one were written.`,
        );
      }
    }
    writing.finish();
  });
}

function resolveKind(name: string): KindInfo {
  const info = resolveKindName(name);
  if (info === undefined) {
    const names = KINDS.map((k) => k.plural).join(", ");
    throw new CliError(
      `Resource type ${JSON.stringify(name)} is not known (one of: ${names})`,
      USAGE,
    );
  }
  return info;
}

interface GetOptions extends StoreOptions {
  output: string;
  namespace?: string;
  allNamespaces?: boolean;
}

/** What a `get` prints for a list: a `<Kind>List` document, as calicoctl and kubectl. */
function listDocument(info: KindInfo, items: Resource[], revision: number) {
  return {
    apiVersion: info.apiVersion,
    kind: `${info.kind}List`,
    metadata: { resourceVersion: String(revision) },
    items,
  };
}

function render(format: string, value: unknown): string {
  return format === "json"
    ? `${JSON.stringify(value, null, 2)}\n`
    : toYaml(value, { lineWidth: 0 });
}

export function renderTable(columns: Column[], items: Resource[]): string {
  const rows = [columns.map((c) => c.header), ...items.map((r) => columns.map((c) => c.value(r)))];
  const widths = columns.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length)));
  return `${rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd((widths[i] as number) + 3)))
        .join("")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

async function getCommand(
  kindName: string,
  name: string | undefined,
  opts: GetOptions,
): Promise<void> {
  const info = resolveKind(kindName);
  if (opts.namespace !== undefined && opts.allNamespaces === true) {
    throw new CliError("--namespace and --all-namespaces cannot be used together", USAGE);
  }
  if (name !== undefined && opts.allNamespaces === true && info.namespaced) {
    throw new CliError("a NAME needs one namespace (use -n), not --all-namespaces", USAGE);
  }
  const namespace = info.namespaced
    ? opts.allNamespaces === true
      ? undefined
      : (opts.namespace ?? DEFAULT_NAMESPACE)
    : undefined;
  await withClient(opts, async (client) => {
    let items: Resource[];
    let revision = 0;
    if (name !== undefined) {
      const r = await client.get(info, name, namespace);
      if (r === undefined)
        throw new CliError(`${describeResource(info, name, namespace)} not found`);
      items = [r];
    } else {
      ({ items, revision } = await client.list(info, namespace));
    }
    if (opts.output === "yaml" || opts.output === "json") {
      process.stdout.write(
        render(opts.output, name !== undefined ? items[0] : listDocument(info, items, revision)),
      );
      return;
    }
    process.stdout.write(
      renderTable(opts.output === "wide" ? info.wideColumns : info.columns, items),
    );
  });
}

interface DeleteOptions extends StoreOptions {
  filename?: string[];
  namespace?: string;
  skipNotExists?: boolean;
}

async function deleteCommand(
  kindName: string | undefined,
  name: string | undefined,
  opts: DeleteOptions,
): Promise<void> {
  let targets: Array<{
    info: KindInfo;
    name: string;
    namespace?: string;
    resourceVersion?: string;
    where: string;
  }>;
  if (opts.filename !== undefined && opts.filename.length > 0) {
    if (kindName !== undefined)
      throw new CliError("give either -f FILE or KIND NAME, not both", USAGE);
    targets = readInput(opts.filename).map((d) => ({
      info: d.info,
      name: d.resource.metadata.name,
      namespace: d.resource.metadata.namespace,
      resourceVersion: d.resource.metadata.resourceVersion,
      where: `${d.where}: `,
    }));
  } else {
    if (kindName === undefined || name === undefined)
      throw new CliError("delete needs KIND NAME or -f FILE", USAGE);
    const info = resolveKind(kindName);
    targets = [
      {
        info,
        name,
        namespace: info.namespaced ? (opts.namespace ?? DEFAULT_NAMESPACE) : undefined,
        where: "",
      },
    ];
  }
  await withClient(opts, async (client) => {
    const errors: string[] = [];
    const present: typeof targets = [];
    for (const t of targets) {
      const current = await client.get(t.info, t.name, t.namespace);
      const what = describeResource(t.info, t.name, t.namespace);
      if (t.info.readOnly !== undefined) {
        try {
          refuseReadOnly(t.info, t.name, t.namespace, "delete");
        } catch (err) {
          errors.push(`${t.where}${(err as Error).message}`);
        }
      } else if (current === undefined) {
        if (opts.skipNotExists !== true) errors.push(`${t.where}${what} not found`);
      } else if (
        t.resourceVersion !== undefined &&
        t.resourceVersion !== current.metadata.resourceVersion
      ) {
        errors.push(
          `${t.where}${what}: resourceVersion "${t.resourceVersion}" is stale (stored: "${current.metadata.resourceVersion}")`,
        );
      } else present.push(t);
    }
    if (errors.length > 0) throw new CliError(`${errors.join("\n")}\nNothing was deleted.`);
    for (const t of present) {
      try {
        await client.delete(t.info, t.name, t.namespace, t.resourceVersion);
      } catch (err) {
        if (!(err instanceof ResourceError)) throw err;
        throw new CliError(`${t.where}${err.message}`);
      }
      process.stdout.write(`deleted ${describeResource(t.info, t.name, t.namespace)}\n`);
    }
  });
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

const KIND_HELP = `KIND is a plural, singular or short name: ${KINDS.map((k) => `${k.plural} (${[k.singular, ...k.aliases.slice(0, 2)].join(", ")})`).join("; ")}`;

export function register(program: Command): void {
  for (const [mode, verb, summary] of [
    ["apply", "apply", "create or update resources from YAML/JSON (multi-document or a List)"],
    ["create", "create", "create resources; fails if any already exists"],
    ["update", "replace", "replace existing resources; fails if any does not exist"],
  ] as const) {
    addDatastoreOptions(
      program
        .command(verb)
        .description(
          `${summary}. Every document is validated, and checked against the store, before anything is written; metadata.resourceVersion, when given, must match the stored one`,
        )
        .requiredOption(
          "-f, --filename <file>",
          "file to read, or - for stdin (repeatable)",
          collect,
        )
        .option("--progress", "progress lines on stderr also when it is not a terminal", false),
    ).action((opts: StoreOptions & { filename: string[]; progress?: boolean }) =>
      writeCommand(mode, opts),
    );
  }

  program
    .command("validate")
    .description(
      "check resources from YAML/JSON files without a datastore: syntax, fields, values and defaults",
    )
    .requiredOption("-f, --filename <file>", "file to read, or - for stdin (repeatable)", collect)
    .action((opts: { filename: string[] }) => {
      const docs = readInput(opts.filename);
      for (const d of docs) process.stdout.write(`${d.where}: ${describeOf(d)} is valid\n`);
    });

  addDatastoreOptions(
    program
      .command("get")
      .description(`print resources as a table, YAML or JSON. ${KIND_HELP}`)
      .argument("<kind>", "resource kind")
      .argument("[name]", "resource name (all when omitted)")
      .addOption(
        new Option("-o, --output <format>", "output format")
          .choices(["table", "wide", "yaml", "json"])
          .default("table"),
      )
      .option(
        "-n, --namespace <ns>",
        `namespace of namespaced kinds (default "${DEFAULT_NAMESPACE}")`,
      )
      .option("-A, --all-namespaces", "list namespaced kinds across all namespaces"),
  ).action((kind: string, name: string | undefined, opts: GetOptions) =>
    getCommand(kind, name, opts),
  );

  addDatastoreOptions(
    program
      .command("delete")
      .description(`delete one resource (KIND NAME) or every resource in files (-f). ${KIND_HELP}`)
      .argument("[kind]", "resource kind")
      .argument("[name]", "resource name")
      .option(
        "-f, --filename <file>",
        "delete the resources named in this file, or - for stdin (repeatable)",
        collect,
      )
      .option(
        "-n, --namespace <ns>",
        `namespace of a namespaced kind (default "${DEFAULT_NAMESPACE}")`,
      )
      .option("--skip-not-exists", "do not fail for resources that do not exist"),
  ).action((kind: string | undefined, name: string | undefined, opts: DeleteOptions) =>
    deleteCommand(kind, name, opts),
  );
}
