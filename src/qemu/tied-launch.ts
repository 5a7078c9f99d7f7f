import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

/**
 * The executable a command name runs: a name with a slash as it is
 * (resolved against the working directory), any other looked up on PATH as
 * a shell would. Undefined when there is no such executable file.
 */
export function findExecutable(name: string, path = process.env.PATH ?? ""): string | undefined {
  const candidates = name.includes("/")
    ? [isAbsolute(name) ? name : resolve(name)]
    : path
        .split(delimiter)
        .filter((dir) => dir !== "")
        .map((dir) => join(dir, name));
  return candidates.find((file) => whyNotExecutable(file) === undefined);
}

/**
 * Why `file` cannot be run, in a few words (no such file, a directory, not
 * a regular file, no execute permission), or undefined when it can.
 */
export function whyNotExecutable(file: string): string | undefined {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(file);
  } catch {
    return "no such file";
  }
  if (stats.isDirectory()) return "it is a directory";
  if (!stats.isFile()) return "it is not a regular file";
  try {
    accessSync(file, constants.X_OK);
  } catch {
    return "it is not executable";
  }
  return undefined;
}

/**
 * The command line that runs `executable` so that it dies with its
 * parent: on Linux, util-linux's setpriv(1) sets the parent-death signal
 * (prctl(2) PR_SET_PDEATHSIG, kept across its execve) to SIGKILL, then
 * becomes the program in the same process. A QEMU started this way does not
 * outlive an hvlab that was killed (SIGKILL gives hvlab no chance to stop
 * it). The "parent" the kernel watches is the thread that spawned the
 * program, not the whole process: spawned from a worker thread, it would
 * die when that worker ends, so hvlab starts QEMU from its main thread.
 * Where setpriv is missing the program runs as it is, and only hvlab's own
 * exit paths stop it.
 */
export function tiedToParent(
  executable: string,
  args: readonly string[],
  /** setpriv's path, or null where there is none (default: looked up on Linux). */
  setpriv: string | null = process.platform === "linux"
    ? (findExecutable("setpriv") ?? null)
    : null,
): { command: string; args: string[] } {
  if (setpriv === null) return { command: executable, args: [...args] };
  return { command: setpriv, args: ["--pdeathsig", "KILL", "--", executable, ...args] };
}
