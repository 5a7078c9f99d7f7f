import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { packageRoot } from "../util/package-root.js";
import { installInterruptHandlers } from "./interrupt.js";
import { UsageError } from "./options.js";

/** hvlab's version, from its package.json (read alone: no machine probing at start-up). */
export function hvlabVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(`${packageRoot()}/package.json`, "utf8")) as {
      version?: unknown;
    };
    return typeof manifest.version === "string" ? manifest.version : "?";
  } catch {
    return "?";
  }
}

/**
 * The `hvlab` program with no command yet: its name, description, version,
 * and errors that come back as exceptions instead of exiting the process.
 */
export function rootProgram(): Command {
  return new Command("hvlab")
    .description(
      "a performance lab for Hyper-V 2.0's hypervisor features: live migration, SLAT against shadow paging, networking offloads, on real bytes",
    )
    .version(hvlabVersion())
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({
      outputError: (text, write) => write(`hvlab: ${text.replace(/^error: /, "")}`),
    })
    .exitOverride();
}

/** Makes every command and subcommand of `program` throw instead of exiting. */
export function overrideExits(program: Command): Command {
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

/**
 * Runs `program` on the command line `argv`. Errors become one line on
 * stderr and a non-zero exit code, never a stack trace (set HVLAB_DEBUG=1
 * to see one): 2 for a usage error, 1 for a failure.
 */
export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
  // Ctrl-C and SIGTERM say what was under way and leave no temporary file behind.
  installInterruptHandlers();
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
