import { type Command, InvalidArgumentError } from "commander";
import { MAX_VM_DISK_BYTES } from "../../csv/vm.js";
import { vmScenarioClean, vmScenarioSection } from "../../csv/vm-report.js";
import { runVmScenario } from "../../csv/vm-scenario.js";
import { IO_MODES, type IoMode } from "../../storage/io-spec.js";
import { checkOutputFlags, integerOption, sizeOption, UsageError } from "../options.js";
import { prepareScenarioOutput, printSection, writeSectionReport } from "../section-output.js";

function choice<T extends string>(values: readonly T[], what: string) {
  return (text: string): T => {
    if (!values.includes(text as T))
      throw new InvalidArgumentError(`${what} must be one of ${values.join(", ")}, not "${text}"`);
    return text as T;
  };
}

/** `hvlab csv vms`: VMs on the volume, live against quick migration. */
export function registerCsvVms(csv: Command): void {
  csv
    .command("vms")
    .description(
      "VMs on the cluster: start the target and N nodes, one VM per node running the guest I/O workload (verify mode) on a VHD on the volume; live-migrate one VM (VHD handover, no LUN move) and quick-migrate the owner's VM (LUN move); check the volume and every VHD",
    )
    .option("--nodes <n>", "node processes, one VM each (3 to 8)", integerOption(3, 8), 3)
    .option(
      "--type <type>",
      "VHD type: fixed or dynamic",
      choice(["fixed", "dynamic"], "--type"),
      "dynamic",
    )
    .option(
      "--disk-size <size>",
      "each VM's disk",
      sizeOption(1 << 20, MAX_VM_DISK_BYTES),
      16 << 20,
    )
    .option("--rw <mode>", `workload: ${IO_MODES.join(", ")}`, choice(IO_MODES, "--rw"), "randrw")
    .option("--bs <size>", "block size, 512 B to 1 MiB", sizeOption(512, 1 << 20), 4096)
    .option("--iodepth <n>", "requests per batch", integerOption(1, 1024), 1)
    .option("--before <ms>", "workload before the migrations", integerOption(100, 600_000), 2000)
    .option("--after <ms>", "workload after them", integerOption(100, 600_000), 2000)
    .option("--heartbeat-interval <ms>", "time between heartbeats", integerOption(10, 60_000), 200)
    .option(
      "--heartbeat-misses <n>",
      "heartbeats missed before a peer is dead",
      integerOption(1, 100),
      5,
    )
    .option("--lun-size <size>", "size of the LUN file", sizeOption(16 << 20, 64 << 30), 256 << 20)
    .option("--dir <dir>", "keep the LUN, the VMs' state files and the VHD copies in this folder")
    .option("--html <file>", "write the report section as a self-contained HTML file")
    .option("--json", "print the whole result as JSON")
    .action(
      async (flags: {
        nodes: number;
        type: "fixed" | "dynamic";
        diskSize: number;
        rw: IoMode;
        bs: number;
        iodepth: number;
        before: number;
        after: number;
        heartbeatInterval: number;
        heartbeatMisses: number;
        lunSize: number;
        dir?: string;
        html?: string;
        json?: boolean;
      }) => {
        checkOutputFlags(flags);
        if (flags.bs % 512 !== 0) throw new UsageError(`--bs ${flags.bs}: not a multiple of 512`);
        if (flags.diskSize % 512 !== 0)
          throw new UsageError(`--disk-size ${flags.diskSize}: not a multiple of 512`);
        if (flags.diskSize < flags.bs)
          throw new UsageError(`--disk-size ${flags.diskSize} is smaller than --bs ${flags.bs}`);
        const need = flags.nodes * (flags.diskSize + (4 << 20));
        if (need > flags.lunSize)
          throw new UsageError(
            `--lun-size ${flags.lunSize}: ${flags.nodes} VHDs of ${flags.diskSize} bytes need about ${need}`,
          );
        prepareScenarioOutput(flags);
        const result = await runVmScenario({
          nodes: flags.nodes,
          type: flags.type,
          diskBytes: flags.diskSize,
          rw: flags.rw,
          bs: flags.bs,
          iodepth: flags.iodepth,
          beforeMs: flags.before,
          afterMs: flags.after,
          heartbeatMs: flags.heartbeatInterval,
          misses: flags.heartbeatMisses,
          lunBytes: flags.lunSize,
          ...(flags.dir !== undefined ? { dir: flags.dir } : {}),
          log: (line) => console.error(line),
        });
        const section = vmScenarioSection(result);
        if (flags.html !== undefined)
          await writeSectionReport(flags.html, "hvlab csv vms", section);
        if (flags.json) console.log(JSON.stringify(result, null, 2));
        else {
          printSection(section, flags.html);
        }
        if (!vmScenarioClean(result)) {
          const bad = result.disks.find(
            (d) => !d.structure.ok || d.intactBlocks !== d.acknowledgedBlocks,
          );
          throw new Error(
            `the VMs' storage did not survive: ${result.check.problems[0]?.message ?? (bad ? `${bad.vhd}: ${bad.structure.problems[0]?.message ?? `${bad.acknowledgedBlocks - bad.intactBlocks} acknowledged blocks lost, first at byte ${bad.badOffsets[0]}`}` : "a read failed its check")}`,
          );
        }
      },
    );
}
