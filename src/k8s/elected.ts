// kube-controllers inside `ocelot node run`: every node given a kubeconfig campaigns for the
// datastore lease `kube-controllers` (src/datastore/lease.ts); the one holding it runs the
// controllers (controllers.ts), and stops them as soon as it loses the lease, so one runs in the
// cluster. Starts and stops are serialised (a lost lease during a start stops what started); a
// failed start is tried again while the lease is held.
// Not: the election itself (lease.ts) or the controllers' work.
import { LeaderLease } from "../datastore/lease.js";
import type { Datastore } from "../datastore/types.js";
import { type KubeControllers, startKubeControllers } from "./controllers.js";

export const KUBE_CONTROLLERS_LEASE = "kube-controllers";

export interface ElectedOptions {
  store: Datastore;
  kubeconfig: string;
  /** This node's name: its identity in the lease. */
  identity: string;
  ttlMs: number;
  resyncMs?: number;
  /** Wait before starting the controllers again after a failed start (default 5 s). */
  retryMs?: number;
  log: (line: string) => void;
  /** Called each time this candidate has started the controllers (it leads). */
  onStarted?: (ctl: KubeControllers) => void;
}

export interface ElectedKubeControllers {
  isLeader(): boolean;
  stop(): Promise<void>;
}

export function runElectedKubeControllers(o: ElectedOptions): ElectedKubeControllers {
  let ctl: KubeControllers | undefined;
  let chain: Promise<void> = Promise.resolve();
  let wanted = false;
  let retry: NodeJS.Timeout | undefined;
  const retryMs = o.retryMs ?? 5000;
  const converge = () => {
    clearTimeout(retry);
    chain = chain.then(async () => {
      if (wanted && !ctl) {
        try {
          ctl = await startKubeControllers({
            kubeconfig: o.kubeconfig,
            store: o.store,
            log: o.log,
            ...(o.resyncMs !== undefined ? { resyncMs: o.resyncMs } : {}),
          });
          o.log(`kube-controllers: started on ${o.identity} (lease held)`);
          o.onStarted?.(ctl);
        } catch (err) {
          // Still the leader: try again after a while (a kubeconfig not written yet, say).
          o.log(`kube-controllers: not started: ${(err as Error).message}; again in ${retryMs} ms`);
          retry = setTimeout(converge, retryMs);
        }
      } else if (!wanted && ctl) {
        const c = ctl;
        ctl = undefined;
        await c.stop().catch(() => {});
        o.log(`kube-controllers: stopped on ${o.identity}`);
      }
    });
  };
  const lease = new LeaderLease({
    store: o.store,
    name: KUBE_CONTROLLERS_LEASE,
    identity: o.identity,
    ttlMs: o.ttlMs,
    log: o.log,
    onLead: () => {
      wanted = true;
      converge();
    },
    onLose: () => {
      wanted = false;
      converge();
    },
  });
  lease.start();
  return {
    isLeader: () => lease.isLeader,
    async stop() {
      await lease.stop();
      wanted = false;
      clearTimeout(retry);
      converge();
      await chain;
    },
  };
}
