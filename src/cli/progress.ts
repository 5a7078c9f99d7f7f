import cliProgress from "cli-progress";

/** A progress bar on stderr, shown only when stderr is a terminal. */
export interface Progress {
  /** Moves the bar to `done` steps (and to a new total when given). */
  update(done: number, label?: string, total?: number): void;
  stop(): void;
}

/** Starts a progress bar for `total` steps (a no-op when stderr is not a TTY). */
export function startProgress(title: string, total: number): Progress {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${title} [{bar}] {value}/{total} {label}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { label: "" });
  return {
    update(done, label = "", newTotal) {
      if (newTotal !== undefined) bar.setTotal(newTotal);
      bar.update(done, { label });
    },
    stop() {
      bar.stop();
    },
  };
}

/** Where a distributed sweep stands, as {@link startSweepProgress} shows it. */
export interface SweepProgressView {
  readonly total: number;
  readonly done: number;
  readonly running: number;
  readonly failed: number;
  readonly waiting: number;
  readonly workers: readonly {
    readonly name: string;
    readonly done: number;
    readonly running: number;
    readonly failed: number;
  }[];
}

/**
 * Progress of a sweep run by workers elsewhere: one bar for the sweep
 * (done / running / failed / waiting) and one line per worker with its share,
 * on stderr when it is a terminal (a no-op otherwise).
 */
export function startSweepProgress(
  title: string,
  total: number,
): {
  update(view: SweepProgressView): void;
  stop(): void;
} {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bars = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      format: "{name} [{bar}] {value}/{total} {label}",
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const sweep = bars.create(total, 0, { name: title, label: "" });
  const lines = new Map<string, cliProgress.SingleBar>();
  const width = Math.max(title.length, 12);
  return {
    update(view) {
      sweep.update(view.done + view.failed, {
        name: title.padEnd(width),
        label: `done ${view.done}, running ${view.running}, failed ${view.failed}, waiting ${view.waiting}`,
      });
      for (const w of view.workers) {
        let bar = lines.get(w.name);
        if (!bar) {
          bar = bars.create(total, 0, { name: w.name.slice(0, 40).padEnd(width), label: "" });
          lines.set(w.name, bar);
        }
        bar.update(w.done + w.failed, {
          label: `done ${w.done}, running ${w.running}, failed ${w.failed}`,
        });
      }
    },
    stop() {
      bars.stop();
    },
  };
}
