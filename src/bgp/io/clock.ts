// The clock the speaker runs on: wall time for uptimes and one-shot timers. Injectable so tests
// drive protocol time by hand. Owns: the Clock interface, the real clock and a manual test clock.
// Not: which timers exist (the FSM decides) or what happens when they fire.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimer(ms: number, fire: () => void): TimerHandle;
}

/** The longest delay setTimeout takes (a longer one fires at once, with a warning). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * A running setTimeout as a handle: an object of its own, not closures (each session keeps its
 * hold and keepalive timers running, 1,000 sessions at a reflector).
 */
class TimeoutHandle implements TimerHandle {
  constructor(private readonly t: ReturnType<typeof setTimeout>) {}
  cancel(): void {
    clearTimeout(this.t);
  }
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fire) {
    if (ms <= MAX_TIMEOUT_MS) {
      const t = setTimeout(fire, ms);
      t.unref?.();
      return new TimeoutHandle(t);
    }
    // Long timers (RFC 9494's stale time goes up to 194 days) are chained in steps.
    const end = Date.now() + ms;
    let t: ReturnType<typeof setTimeout>;
    const arm = (left: number) => {
      t = setTimeout(
        () => {
          const rest = end - Date.now();
          if (left > MAX_TIMEOUT_MS && rest > 0) arm(rest);
          else fire();
        },
        Math.min(left, MAX_TIMEOUT_MS),
      );
      t.unref?.();
    };
    arm(ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock that only moves when advance() is called; timers fire in time order. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fire: () => void }>();

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(ms: number, fire: () => void): TimerHandle {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + ms, fire });
    return { cancel: () => this.timers.delete(id) };
  }

  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by ms, firing due timers in order (bounded to 1e6 firings). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let i = 0; i < 1_000_000; i++) {
      let best: [number, { at: number; fire: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!best || e[1].at < best[1].at)) best = e;
      if (!best) break;
      this.timers.delete(best[0]);
      this.t = best[1].at;
      best[1].fire();
    }
    this.t = end;
  }
}

/** Named one-shot timers of one session: starting a running timer restarts it. */
export class SessionTimers<N extends string> {
  private readonly running = new Map<N, TimerHandle>();

  constructor(
    private readonly clock: Clock,
    private readonly onExpire: (name: N) => void,
  ) {}

  start(name: N, ms: number): void {
    this.stop(name);
    const h = this.clock.setTimer(ms, () => {
      this.running.delete(name);
      this.onExpire(name);
    });
    this.running.set(name, h);
  }

  stop(name: N): void {
    this.running.get(name)?.cancel();
    this.running.delete(name);
  }

  stopAll(): void {
    for (const h of this.running.values()) h.cancel();
    this.running.clear();
  }

  isRunning(name: N): boolean {
    return this.running.has(name);
  }
}
