import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Vitest global setup: the run gets a temporary folder of its own (TMPDIR,
 * which os.tmpdir() and every child process honour), and at the end every
 * test must have removed what it made there. Whatever is left is named and
 * fails the run, then removed, so a run never litters the machine.
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "hvlab-test-run-"));
  process.env.TMPDIR = root;
  return () => {
    // The pass-through lock folder is shared by every hvlab on a machine, as
    // /run/lock is: kept by design, but it must hold no lock once tests end.
    const left = readdirSync(root).filter(
      (name) => !(name === "hvlab-passthrough-locks" && readdirSync(join(root, name)).length === 0),
    );
    rmSync(root, { recursive: true, force: true });
    if (left.length > 0) {
      // Vitest reports an error thrown here but still exits 0: set the code as well.
      process.exitCode = 1;
      throw new Error(`tests left ${left.length} temporary files or folders: ${left.join(", ")}`);
    }
  };
}
