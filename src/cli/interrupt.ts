import { removeAllTemporaries } from "../util/temporary.js";

/**
 * What the command is doing right now, for the line Ctrl-C prints: each
 * running piece registers a describer and removes it when done.
 */
const activities = new Set<() => string>();
let installed = false;

/** Exit codes of a process ended by a signal, as shells report them (128 + signal number). */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Registers a line saying what is under way, printed if the process is
 * interrupted. Returns the function that unregisters it.
 */
export function whileInterruptible(describe: () => string): () => void {
  activities.add(describe);
  return () => {
    activities.delete(describe);
  };
}

/**
 * Handles SIGINT and SIGTERM for the command line: prints what was under
 * way (one line each), removes every tracked temporary file and folder, and
 * exits with 128 + the signal's number. Without this, Node exits at once
 * and no `finally` runs: a quick migration's saved state stayed behind.
 */
export function installInterruptHandlers(write: (line: string) => void = console.error): void {
  if (installed) return;
  installed = true;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      const name = signal === "SIGINT" ? "interrupted (SIGINT)" : "terminated (SIGTERM)";
      const lines = [...activities].map((describe) => describe());
      if (lines.length === 0) write(`hvlab: ${name}`);
      for (const line of lines) write(`hvlab: ${name} ${line}`);
      for (const failure of removeAllTemporaries()) {
        write(`hvlab: could not remove the temporary ${failure}`);
      }
      process.exit(SIGNAL_EXIT[signal]);
    });
  }
}
