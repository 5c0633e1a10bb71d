// kube-controllers started for a test and awaited until its first pass is done (bounded by
// HANG_MS, its log in the error), stopped again if it never gets there.
import {
  type KubeControllers,
  type KubeControllersOptions,
  startKubeControllers,
} from "../../src/k8s/controllers.js";
import { HANG_MS } from "../helpers/limits.js";

/** startKubeControllers (retrying after 300 ms unless told), its log lines pushed onto logs. */
export async function startSyncedControllers(
  o: Omit<KubeControllersOptions, "log">,
  logs: string[],
): Promise<KubeControllers> {
  const ctl = await startKubeControllers({ retryMs: 300, ...o, log: (l) => logs.push(l) });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ctl.synced,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`not in sync: ${logs.join("\n")}`)), HANG_MS);
      }),
    ]);
  } catch (err) {
    await ctl.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return ctl;
}
