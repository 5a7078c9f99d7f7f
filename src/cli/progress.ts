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
