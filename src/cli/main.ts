import type { Command } from "commander";
import { overrideExits, rootProgram, runProgram } from "./program.js";

/** Adds one module's commands to the program. */
type Register = (program: Command) => void;

/**
 * Every command module, in the order help lists them, with the top-level
 * commands it registers. A process loads only the module its command needs:
 * loading them all costs about a second of CPU, paid by every node, worker
 * and target process a cluster or a distributed sweep starts.
 */
export const COMMAND_MODULES: readonly {
  readonly names: readonly string[];
  readonly load: () => Promise<Register>;
}[] = [
  { names: ["tour"], load: async () => (await import("./commands/tour.js")).registerTour },
  { names: ["bench"], load: async () => (await import("./commands/bench.js")).registerBench },
  { names: ["dirty"], load: async () => (await import("./commands/dirty.js")).registerDirty },
  {
    names: ["migrate"],
    load: async () => {
      // The live mode adds --listen/--to to migrate through its hook when loaded.
      await import("./commands/migrate-live.js");
      return (await import("./commands/migrate.js")).registerMigrate;
    },
  },
  { names: ["paging"], load: async () => (await import("./commands/paging.js")).registerPaging },
  {
    names: ["migrate-live"],
    load: async () => (await import("./commands/migrate-live.js")).registerMigrateLive,
  },
  {
    names: ["quick-migrate"],
    load: async () => (await import("./commands/quick-migrate.js")).registerQuickMigrate,
  },
  { names: ["net"], load: async () => (await import("./commands/net.js")).registerNet },
  { names: ["power"], load: async () => (await import("./commands/power.js")).registerPower },
  {
    names: ["storage"],
    load: async () => (await import("./commands/storage.js")).registerStorage,
  },
  { names: ["qemu"], load: async () => (await import("./commands/qemu.js")).registerQemu },
  { names: ["csv"], load: async () => (await import("./commands/csv.js")).registerCsv },
  {
    names: ["worker", "queue"],
    load: async () => (await import("./commands/distributed.js")).registerDistributed,
  },
];

/**
 * Builds the `hvlab` program for `argv`: with only the module of the
 * command named there, with none for `--version` alone, or with every
 * command (help, no command, a name that is no command, so that commander
 * can list them and suggest one).
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = rootProgram();
  const word = argv.find((arg) => !arg.startsWith("-"));
  const named = COMMAND_MODULES.find((module) => word !== undefined && module.names.includes(word));
  // `hvlab --version` (no command, no help) prints the version and exits
  // before any command would run, so it loads none: it measures start-up alone.
  const versionOnly =
    word === undefined &&
    argv.some((arg) => arg === "--version" || arg === "-V") &&
    !argv.some((arg) => arg === "--help" || arg === "-h");
  const needed = named ? [named] : versionOnly ? [] : COMMAND_MODULES;
  const registers = await Promise.all(needed.map((m) => m.load()));
  for (const register of registers) register(program);
  return overrideExits(program);
}

/**
 * Runs the command line. Errors become one line on stderr and a non-zero exit
 * code, never a stack trace (set HVLAB_DEBUG=1 to see one).
 */
export async function main(argv: readonly string[]): Promise<number> {
  return runProgram(await buildProgram(argv), argv);
}
