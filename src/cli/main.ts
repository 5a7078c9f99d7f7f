import { Command, CommanderError } from "commander";
import { machineInfo } from "../bench/machine.js";
import { installInterruptHandlers } from "./interrupt.js";
import { UsageError } from "./options.js";

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
  const program = new Command("hvlab")
    .description(
      "a performance lab for Hyper-V 2.0's hypervisor features: live migration, SLAT against shadow paging, networking offloads, on real bytes",
    )
    .version(machineInfo().hvlab)
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({
      outputError: (text, write) => write(`hvlab: ${text.replace(/^error: /, "")}`),
    })
    .exitOverride();
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
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

/**
 * Runs the command line. Errors become one line on stderr and a non-zero exit
 * code, never a stack trace (set HVLAB_DEBUG=1 to see one).
 */
export async function main(argv: readonly string[]): Promise<number> {
  // Ctrl-C and SIGTERM say what was under way and leave no temporary file behind.
  installInterruptHandlers();
  const program = await buildProgram(argv);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed its message already. Help and version exit 0;
      // everything else it refuses (an unknown option, a bad value) is a usage error.
      return error.exitCode === 0 ? 0 : 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    console.error(`hvlab: ${message}`);
    if (process.env.HVLAB_DEBUG) console.error(error);
    return error instanceof UsageError ? 2 : 1;
  }
}
