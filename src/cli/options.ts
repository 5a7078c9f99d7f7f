import { type Command, InvalidArgumentError, Option } from "commander";
import { formatSize, parseSize } from "../util/units.js";

/** A commander parser for a byte size (`64MiB`, `1TiB`), bounded. */
export function sizeOption(min: number, max: number) {
  return (text: string): number => {
    let bytes: number;
    try {
      bytes = parseSize(text);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
    if (bytes < min || bytes > max) {
      throw new InvalidArgumentError(`must be from ${formatSize(min)} to ${formatSize(max)}`);
    }
    return bytes;
  };
}

/** A commander parser for a whole number within [min, max]. */
export function integerOption(min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^-?\d+$/.test(text.trim())) {
      throw new InvalidArgumentError(`"${text}" is not a whole number`);
    }
    // A whole number too large for a double is still a whole number: out of range.
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    }
    if (value < min || value > max) throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    return value;
  };
}

/** A commander parser for a finite number within [min, max]. */
export function numberOption(min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) {
      throw new InvalidArgumentError(`"${text}" is not a number`);
    }
    if (value < min || value > max) throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    return value;
  };
}

/** Output format flags shared by commands that produce records. */
export interface OutputFlags {
  readonly json?: boolean;
  readonly csv?: boolean;
}

/** Refuses `--json` together with `--csv`. */
export function checkOutputFlags(flags: OutputFlags): void {
  if (flags.json && flags.csv) throw new UsageError("choose one of --json and --csv");
}

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/*
 * The options every command shares, declared once. A new command adds them
 * with these helpers so that names, ranges, defaults and help read the same
 * everywhere (units shown as the user types them: 1GiB, not 1073741824).
 */

/** The largest seed: the workload generators take 32 bits. */
export const MAX_SEED = 2 ** 32 - 1;

/** `--seed <n>`: the seed of every random choice the command makes. */
export function seedOption(description = "seed of every random choice", fallback = 1): Option {
  return new Option("--seed <n>", `${description} (0 to ${MAX_SEED})`)
    .argParser(integerOption(0, MAX_SEED))
    .default(fallback);
}

/** Adds {@link seedOption} to a command. */
export function addSeedOption(
  command: Command,
  description = "seed of every random choice",
  fallback = 1,
): Command {
  return command.addOption(seedOption(description, fallback));
}

/** `--json`: print the command's records as JSON. */
export function jsonOption(description: string): Option {
  return new Option("--json", description);
}

/** `--csv`: print the command's table as CSV (RFC 4180, for pandas and spreadsheets). */
export function csvOption(description: string): Option {
  return new Option("--csv", description);
}

/**
 * A byte-size option, `--guest <size>`: accepts `64MiB`, `1TiB`, `4096`;
 * its range and default appear in help in those units.
 */
export function sizeOptionOf(
  flags: string,
  description: string,
  min: number,
  max: number,
  fallback?: number,
): Option {
  const option = new Option(flags, `${description} (${formatSize(min)} to ${formatSize(max)})`);
  option.argParser(sizeOption(min, max));
  return fallback === undefined ? option : option.default(fallback, formatSize(fallback));
}

/** The sizes a command accepts for `--guest`. */
export interface GuestRange {
  readonly min: number;
  readonly max: number;
  readonly fallback: number;
}

/** `--guest <size>`: the guest's memory. */
export function guestOption(range: GuestRange, description = "guest memory"): Option {
  return sizeOptionOf("--guest <size>", description, range.min, range.max, range.fallback);
}

/** Adds {@link guestOption} to a command. */
export function addGuestOption(
  command: Command,
  range: GuestRange,
  description = "guest memory",
): Command {
  return command.addOption(guestOption(range, description));
}

/** Adds `--vcpus <n>`: the vCPUs that run the guest's workload. */
export function addVcpusOption(
  command: Command,
  max: number,
  fallback = 2,
  description = "vCPUs writing",
): Command {
  return command.option(
    "--vcpus <n>",
    `${description} (1 to ${max})`,
    integerOption(1, max),
    fallback,
  );
}

/** What `--json` and `--csv` print for a command (omit `csv` where there is no table). */
export interface OutputOptionHelp {
  readonly json: string;
  readonly csv?: string;
}

/** Adds `--json` and `--csv` (refused together by {@link checkOutputFlags}). */
export function addOutputOptions(command: Command, help: OutputOptionHelp): Command {
  command.addOption(jsonOption(help.json));
  if (help.csv !== undefined) command.addOption(csvOption(help.csv));
  return command;
}

/**
 * Adds `--workload <kind>` and its parameters (`--hot-set`, `--hot-fraction`
 * and, where the engine has it, `--zipf`). The kind is checked by
 * {@link checkWorkloadKind} when the command runs.
 */
export function addWorkloadOptions(
  command: Command,
  options: {
    readonly kinds: readonly string[];
    readonly maxHotSet: number;
    readonly zipf?: boolean;
    readonly prefix?: string;
  },
): Command {
  const p = options.prefix ?? "";
  command
    .option("--workload <kind>", `${p}write pattern: ${options.kinds.join(", ")}`, "hotset")
    .addOption(
      sizeOptionOf(
        "--hot-set <size>",
        `${p}hotset: writable working set (default: 1/64 of the guest)`,
        4096,
        options.maxHotSet,
      ),
    )
    .option(
      "--hot-fraction <p>",
      `${p}hotset: share of writes into the working set (0 to 1)`,
      numberOption(0, 1),
      0.9,
    );
  if (options.zipf) {
    command.option("--zipf <s>", `${p}zipf: exponent (0.01 to 10)`, numberOption(0.01, 10), 0.99);
  }
  return command;
}

/** Refuses a `--workload` that is not one of `kinds`. */
export function checkWorkloadKind(kind: string, kinds: readonly string[]): void {
  if (!kinds.includes(kind)) {
    throw new UsageError(`unknown workload '${kind}' (one of ${kinds.join(", ")})`);
  }
}
