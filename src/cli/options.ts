import { InvalidArgumentError } from "commander";
import { parseSize } from "../util/units.js";

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
      throw new InvalidArgumentError(`must be from ${min} to ${max} bytes`);
    }
    return bytes;
  };
}

/** A commander parser for a whole number within [min, max]. */
export function integerOption(min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
      throw new InvalidArgumentError(`"${text}" is not a whole number`);
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
