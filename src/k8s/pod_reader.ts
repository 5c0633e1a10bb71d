// Reads one pod and its namespace from the Kubernetes API server with `@kubernetes/client-node`,
// for the CNI plugin's ADD. The client library is imported lazily, here and only when a
// kubeconfig is given, so that a plugin run without Kubernetes does not pay for loading it.
// Owns the mapping of the client's failures to KubeError (retryable or not, one line, no
// stack); not what the facts mean for an endpoint (pod_labels.ts) nor CNI error codes (src/cni).
// Also the Node's InternalIP addresses, for calico-node's kubernetes-internal-ip autodetection.
import { type PodFacts, podFacts } from "./pod_labels.js";

/** A failure talking to the API server: `retryable` when trying again later may succeed. */
export class KubeError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "KubeError";
  }
}

export interface PodRef {
  namespace: string;
  name: string;
}

/** The client's exception for an HTTP status, duck-typed (ApiException from the library). */
function httpStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  const code = typeof e?.code === "number" ? e.code : e?.statusCode; // statusCode: the Watch's
  return typeof code === "number" ? code : undefined;
}

function oneLine(s: string): string {
  const line = s.split("\n")[0] ?? "";
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** Maps a client failure for `what` to a KubeError. */
export function kubeError(err: unknown, what: string, server: string): KubeError {
  if (err instanceof KubeError) return err;
  const status = httpStatus(err);
  if (status !== undefined) {
    const body = (err as { body?: unknown }).body;
    let reason = "";
    try {
      const parsed = typeof body === "string" ? JSON.parse(body) : body;
      if (typeof parsed?.message === "string") reason = `: ${oneLine(parsed.message)}`;
    } catch {}
    if (status === 404) return new KubeError(`${what} not found on ${server}${reason}`, false);
    if (status === 401 || status === 403)
      return new KubeError(`${what}: not allowed by ${server} (HTTP ${status})${reason}`, false);
    const retry = status === 429 || status >= 500;
    return new KubeError(`${what}: ${server} answered HTTP ${status}${reason}`, retry);
  }
  const msg = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown })?.code;
  return new KubeError(
    `${what}: API server ${server} unreachable (${typeof code === "string" ? `${code}: ` : ""}${oneLine(msg)})`,
    true,
  );
}

/** A CoreV1 client from the kubeconfig at `kubeconfig`, and its server's URL (for messages). */
async function coreClient(kubeconfig: string) {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(kubeconfig);
  } catch (err) {
    throw new KubeError(
      `Kubeconfig ${kubeconfig} cannot be read: ${oneLine((err as Error).message)}`,
      false,
    );
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new KubeError(`Kubeconfig ${kubeconfig} names no current cluster`, false);
  return { api: kc.makeApiClient(k8s.CoreV1Api), server };
}

/** `work` bounded by `timeoutMs`: a retryable KubeError naming `what` when the server is slow. */
async function bounded<T>(
  work: Promise<T>,
  what: string,
  server: string,
  timeoutMs: number,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new KubeError(
            `${what}: API server ${server} did not answer within ${timeoutMs} ms`,
            true,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The pod's labels and service account and its namespace's labels, read with the kubeconfig at
 * `kubeconfig`; bounded by `timeoutMs` (a KubeError, retryable, when the server is too slow).
 */
export async function readPodFacts(
  kubeconfig: string,
  ref: PodRef,
  timeoutMs: number,
): Promise<PodFacts> {
  const { api, server } = await coreClient(kubeconfig);
  const what = `Pod ${ref.namespace}/${ref.name}`;
  const [pod, ns] = await bounded(
    Promise.all([
      api
        .readNamespacedPod({ name: ref.name, namespace: ref.namespace })
        .catch((e) => Promise.reject(kubeError(e, what, server))),
      api
        .readNamespace({ name: ref.namespace })
        .catch((e) => Promise.reject(kubeError(e, `Namespace ${ref.namespace}`, server))),
    ]),
    what,
    server,
    timeoutMs,
  );
  return podFacts(pod, ns);
}

/**
 * The InternalIP addresses of the Kubernetes Node `name` (status.addresses, in its order), for
 * IP_AUTODETECTION_METHOD=kubernetes-internal-ip; bounded by `timeoutMs`.
 */
export async function readNodeInternalIPs(
  kubeconfig: string,
  name: string,
  timeoutMs: number,
): Promise<string[]> {
  const { api, server } = await coreClient(kubeconfig);
  const what = `Kubernetes Node ${name}`;
  const node = await bounded(
    api.readNode({ name }).catch((e) => Promise.reject(kubeError(e, what, server))),
    what,
    server,
    timeoutMs,
  );
  return (node.status?.addresses ?? [])
    .filter((a) => a.type === "InternalIP" && typeof a.address === "string")
    .map((a) => a.address);
}
