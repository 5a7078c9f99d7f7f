import { mkdtempSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { Option } from "commander";
import {
  GUEST_PAGE,
  GUEST_PATTERNS,
  type GuestPattern,
  guestImage,
  MAX_GUEST_RAM,
  MAX_WRITE_RATE,
  MIN_GUEST_RAM,
  type ResolvedGuestSpec,
  resolveGuestSpec,
  WORKING_SET_BASE,
  WRITE_COUNTER_ADDRESS,
} from "../../qemu/guest-image.js";
import { measureWriteRate, waitUntilWriting } from "../../qemu/guest-rate.js";
import { ACCELERATORS, type Accelerator, QemuProcess } from "../../qemu/qemu-process.js";
import { formatSize } from "../../util/units.js";
import {
  addSeedOption,
  integerOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";

/** The options every `hvlab qemu` command that builds a guest shares. */
interface GuestFlags {
  readonly guest: number;
  readonly pattern: string;
  readonly rate: number;
  readonly workingSet?: number;
  readonly hotSet?: number;
  readonly hotFraction: number;
  readonly seed: number;
  readonly accel: string;
}

/** Adds the write guest's options. */
function addGuestFlags(command: Command): Command {
  command
    .addOption(
      sizeOptionOf("--guest <size>", "guest RAM", MIN_GUEST_RAM, MAX_GUEST_RAM, 256 * 2 ** 20),
    )
    .option("--pattern <kind>", `write pattern: ${GUEST_PATTERNS.join(", ")}`, "uniform")
    .option(
      "--rate <writes/s>",
      `page writes per second, paced by the HPET (0 = as fast as the vCPU runs; at most ${MAX_WRITE_RATE})`,
      integerOption(0, MAX_WRITE_RATE),
      15_000,
    )
    .addOption(
      sizeOptionOf(
        "--working-set <size>",
        "pages the guest writes (default: all RAM from 16 MiB to 1 MiB below the top)",
        GUEST_PAGE,
        MAX_GUEST_RAM,
      ),
    )
    .addOption(
      sizeOptionOf(
        "--hot-set <size>",
        "hotset: the hot pages (default: 1/64 of the working set)",
        GUEST_PAGE,
        MAX_GUEST_RAM,
      ),
    )
    .option(
      "--hot-fraction <p>",
      "hotset: share of writes into the hot set (0 to 1)",
      numberOption(0, 1),
      0.9,
    )
    .addOption(
      new Option("--accel <name>", `QEMU accelerator: ${ACCELERATORS.join(", ")}`).default("tcg"),
    );
  return addSeedOption(command, "seed of the guest's xorshift32 generator");
}

/** The guest spec the flags ask for; a spec that does not fit is a usage error. */
function guestSpecOf(flags: GuestFlags): ResolvedGuestSpec {
  if (!GUEST_PATTERNS.includes(flags.pattern as GuestPattern))
    throw new UsageError(`--pattern '${flags.pattern}' is not one of ${GUEST_PATTERNS.join(", ")}`);
  if (flags.guest % (2 * 2 ** 20) !== 0)
    throw new UsageError(`--guest ${formatSize(flags.guest)} is not a multiple of 2 MiB`);
  const pageCount = (bytes: number | undefined, name: string) => {
    if (bytes === undefined) return undefined;
    if (bytes % GUEST_PAGE !== 0)
      throw new UsageError(`${name} ${bytes} is not a multiple of 4 KiB`);
    return bytes / GUEST_PAGE;
  };
  try {
    return resolveGuestSpec({
      ramBytes: flags.guest,
      pattern: flags.pattern as GuestPattern,
      workingSetPages: pageCount(flags.workingSet, "--working-set"),
      hotPages: pageCount(flags.hotSet, "--hot-set"),
      hotFraction: flags.hotFraction,
      writesPerSecond: flags.rate,
      seed: flags.seed,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The accelerator the flags ask for. */
function accelOf(flags: GuestFlags): Accelerator {
  if (!ACCELERATORS.includes(flags.accel as Accelerator))
    throw new UsageError(`--accel '${flags.accel}' is not one of ${ACCELERATORS.join(", ")}`);
  return flags.accel as Accelerator;
}

/** Writes the guest image into a fresh temporary folder; returns the folder and the image's path. */
export async function writeGuestToTemp(
  spec: ResolvedGuestSpec,
): Promise<{ dir: string; kernel: string }> {
  const dir = mkdtempSync(join(tmpdir(), "hvlab-qemu-"));
  const kernel = join(dir, "guest.elf");
  await writeFile(kernel, guestImage(spec));
  return { dir, kernel };
}

/** Stops every QEMU that `run` started, whatever happens, also on Ctrl-C. */
export async function withQemus<T>(run: (started: QemuProcess[]) => Promise<T>): Promise<T> {
  const started: QemuProcess[] = [];
  const onSignal = () => {
    for (const q of started) q.kill();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await run(started);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await Promise.all(started.map((q) => q.stop()));
  }
}

function registerGuest(qemu: Command): void {
  const guest = qemu
    .command("guest")
    .description(
      "write the multiboot write guest (a bare-metal ELF QEMU boots with -kernel); --boot runs it and measures its write rate",
    )
    .option("--out <file>", "where to write the image (default: only boot it)")
    .option(
      "--boot <seconds>",
      "boot it under QEMU and measure the write counter for this long",
      numberOption(0.2, 600),
    )
    .option("--json", "print the spec and the measured rate as JSON");
  addGuestFlags(guest).action(
    async (flags: GuestFlags & { out?: string; boot?: number; json?: boolean }) => {
      const spec = guestSpecOf(flags);
      const accel = accelOf(flags);
      if (!flags.out && flags.boot === undefined)
        throw new UsageError("give --out FILE, --boot SECONDS, or both");
      if (flags.out) await writeFile(flags.out, guestImage(spec));
      const record: Record<string, unknown> = {
        spec,
        layout: {
          "write-counter": `0x${WRITE_COUNTER_ADDRESS.toString(16)}`,
          "working-set-base": `0x${WORKING_SET_BASE.toString(16)}`,
        },
        ...(flags.out ? { image: flags.out } : {}),
      };
      if (flags.boot !== undefined) {
        const { dir, kernel } = await writeGuestToTemp(spec);
        try {
          const rate = await withQemus(async (started) => {
            const q = await QemuProcess.start({
              kernel,
              ramBytes: spec.ramBytes,
              accel,
              dir,
              name: "guest",
            });
            started.push(q);
            await waitUntilWriting(q.qmp, 60_000);
            return measureWriteRate(q.qmp, (flags.boot ?? 1) * 1000);
          });
          record.measured = rate;
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
      if (flags.json) {
        console.log(JSON.stringify(record, null, 2));
        return;
      }
      if (flags.out)
        console.log(
          `wrote ${flags.out}: ${formatSize(spec.ramBytes)} guest, ${spec.pattern} over ${spec.workingSetPages} pages at ${spec.writesPerSecond} writes/s; write counter (u64) at guest-physical 0x${WRITE_COUNTER_ADDRESS.toString(16)}`,
        );
      const m = record.measured as
        | { writesPerSecond: number; writesPerGuestSecond: number; wallMs: number }
        | undefined;
      if (m)
        console.log(
          `measured ${Math.round(m.writesPerSecond)} writes/s over ${Math.round(m.wallMs)} ms of wall time (${Math.round(m.writesPerGuestSecond)} per second of the guest's HPET), asked ${spec.writesPerSecond}`,
        );
    },
  );
}

/** Registers `hvlab qemu` and its subcommands. */
export function registerQemu(program: Command): void {
  const qemu = program
    .command("qemu")
    .description(
      "real QEMU as the peer: a write guest hvlab writes itself, real migrations driven over QMP",
    );
  registerGuest(qemu);
}
