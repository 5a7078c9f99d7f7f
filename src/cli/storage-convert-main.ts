import { registerStorageConvert } from "./commands/storage-convert.js";
import { overrideExits, rootProgram, runProgram } from "./program.js";

/**
 * `hvlab storage convert`, with only what it needs loaded: the same
 * command, options, checks and errors as through the whole command line
 * (src/cli/main.ts), as the same `hvlab` program with `storage convert`
 * alone registered. bin/hvlab.js runs it, bundled into one CommonJS file at build
 * time, for a command line that starts `storage convert`: it is timed as a
 * whole command against `qemu-img convert`, start-up included.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = rootProgram();
  registerStorageConvert(program);
  return runProgram(overrideExits(program), argv);
}
