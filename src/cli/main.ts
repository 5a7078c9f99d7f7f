import { Command, CommanderError } from "commander";
import { machineInfo } from "../bench/machine.js";
import { registerBench } from "./commands/bench.js";
import { registerCsv } from "./commands/csv.js";
import { registerDirty } from "./commands/dirty.js";
import { registerDistributed } from "./commands/distributed.js";
import { registerMigrate } from "./commands/migrate.js";
import { registerMigrateLive } from "./commands/migrate-live.js";
import { registerNet } from "./commands/net.js";
import { registerPaging } from "./commands/paging.js";
import { registerPower } from "./commands/power.js";
import { registerQemu } from "./commands/qemu.js";
import { registerQuickMigrate } from "./commands/quick-migrate.js";
import { registerStorage } from "./commands/storage.js";
import { registerTour } from "./commands/tour.js";
import { installInterruptHandlers } from "./interrupt.js";
import { UsageError } from "./options.js";

/** Builds the `hvlab` program with every command. */
export function buildProgram(): Command {
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
  registerTour(program);
  registerBench(program);
  registerDirty(program);
  registerMigrate(program);
  registerPaging(program);
  registerMigrateLive(program);
  registerQuickMigrate(program);
  registerNet(program);
  registerPower(program);
  registerStorage(program);
  registerQemu(program);
  registerCsv(program);
  registerDistributed(program);
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
  const program = buildProgram();
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
