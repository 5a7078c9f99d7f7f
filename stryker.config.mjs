// Mutation testing of the TypeScript engines (docs/testing.md says how to
// read the results). Tests load the kernels from build/ and the pool's
// workers load dist/, so the project must be built first: `npm run mutate`
// builds, then runs scripts/mutate-engines.mjs, which runs Stryker once per
// engine with HVLAB_MUTATE_ENGINE set to the engine's name.
//
// Each engine is mutated against its own fast tests (unit, property, fuzz,
// known answers), not the end-to-end ones: tests that drive the built
// command in a child process (cli, tours, benchmarks, the browser report)
// cannot see a mutant, which lives in the test's own thread, and live
// migration over TCP measures wall-clock rates, which instrumentation slows.
//
// Incremental: each engine's results are kept in
// stryker-incremental/<engine>.json, committed, so a run in a fresh clone
// re-tests only the mutants whose code or covering tests changed.

/**
 * Per engine: the files mutated, the test files run against them, and
 * optionally its own `timeoutMS` (below). An engine whose committed results
 * cover only part of its files names that part in `scored` (files, or a
 * file's line ranges as `path:first-last`): with HVLAB_MUTATE_SCORED=1 only
 * those are mutated, so a run that re-checks the committed results (CI's,
 * `mutate-engines --incremental-only`) reuses them and does not start a
 * first run of the rest, which takes hours. Keep it equal to the files of
 * stryker-incremental/<engine>.json when a partial run adds files.
 * @type {Record<string, { mutate: string[], testFiles: string[], timeoutMS?: number, scored?: string[] }>}
 */
export const ENGINES = {
  guest: {
    mutate: ["src/guest/**/*.ts"],
    testFiles: [
      "test/guest-*.test.ts",
      "test/dirty-epoch-pair.test.ts",
      "test/dirty-profile.test.ts",
      "test/workload-vs-oracle.test.ts",
      "test/pool-epoch-harvest.test.ts",
    ],
  },
  dirty: {
    mutate: ["src/dirty/**/*.ts"],
    testFiles: [
      "test/dirty-*.test.ts",
      "test/pool-epoch-harvest.test.ts",
      "test/pool-concurrent-marking.test.ts",
    ],
  },
  memory: {
    mutate: ["src/memory/**/*.ts"],
    testFiles: [
      "test/memory-*.test.ts",
      "test/kernel-isolation.test.ts",
      "test/kernel-layouts.test.ts",
      "test/kernel-abi.test.ts",
      "test/pool-registry.test.ts",
    ],
  },
  power: {
    mutate: ["src/power/**/*.ts"],
    testFiles: ["test/power-!(cli|bench|report-browser).test.ts"],
    // Its mutants that never end are loops, which Stryker's hit limit stops
    // at once (reported as Timeout); the one that waits instead is the
    // recorder's sleep, which need not be waited on for a minute.
    timeoutMS: 15_000,
  },
  paging: {
    mutate: ["src/paging/**/*.ts"],
    // Also left out: trace-url (the command line over HTTPS, in child
    // processes), compare-pipeline (runs in the pool's workers), and the two
    // random-guest property tests, translate and fuzz-tables (30 to 45 s
    // each on a shared machine, and they reach nearly every mutant: a
    // survivor would run them all); the kernel mutations run those. And
    // the studies' two files, whose comparisons prefault a 128 MiB working
    // set for every configuration (16 to 35 s a mutant); studies-wiring
    // holds studies.ts's rules against a fake comparison instead.
    testFiles: [
      "test/paging-!(cli|tour|studies|studies-rules|trace-url|compare-pipeline|translate|fuzz-tables).test.ts",
    ],
    // A mutant's covering tests take seconds; a mutant that never ends is a
    // loop (the pointer chase's, a walk's), which the hit limit stops at
    // once, so 15 s past the expected time is ample on a busy machine.
    timeoutMS: 15_000,
    // Committed results cover these files only (docs/testing.md, its partial runs).
    scored: [
      "src/paging/compare.ts",
      "src/paging/cost.ts",
      "src/paging/entry.ts",
      "src/paging/errors.ts",
      "src/paging/exits.ts",
      "src/paging/explain.ts",
      "src/paging/guest-os.ts",
      "src/paging/hardware.ts",
      "src/paging/host.ts",
      "src/paging/lackey-scanner.ts",
      "src/paging/machine.ts:1-174",
      "src/paging/machine.ts:175-425",
      "src/paging/machine.ts:426-539",
      "src/paging/mmu.ts",
      "src/paging/physical.ts",
      "src/paging/presets.ts",
      "src/paging/random.ts",
      "src/paging/report-table.ts",
      "src/paging/ring.ts",
      "src/paging/shadow.ts",
      "src/paging/studies.ts",
      "src/paging/tasks.ts",
      "src/paging/trace-source.ts",
      "src/paging/trace.ts:20-465",
      "src/paging/trace.ts:466-583",
      "src/paging/workload.ts",
    ],
  },
  net: {
    mutate: ["src/net/**/*.ts"],
    // Also left out: vmq and vmq-rounds, whose receive paths run in the
    // pool's workers (a pool started anew for every mutant);
    // vmq-classify-rules holds the classifier's rules on this thread.
    testFiles: ["test/net-!(cli|tshark|real-captures|vmq|vmq-rounds).test.ts"],
    // Its endless mutants are the parsers' and planners' loops, which
    // Stryker's hit limit stops at once (a Timeout); the only wait on a
    // clock, the round barrier's, runs in the pool's workers, out of these
    // tests' reach. 15 s past a mutant's tests' own time is ample.
    timeoutMS: 15_000,
    // Committed results cover these files only (docs/testing.md, its partial runs).
    scored: [
      "src/net/traffic.ts",
      "src/net/checksum-audit.ts",
      "src/net/conversations.ts",
      "src/net/send.ts",
      "src/net/software-send.ts",
      "src/net/tcp-streams.ts",
      "src/net/tasks.ts",
      "src/net/errors.ts",
      "src/net/link.ts",
      "src/net/receive-batch.ts",
      "src/net/receive-counts.ts",
      "src/net/byte-checksum.ts",
      "src/net/rss.ts",
      "src/net/address.ts",
      "src/net/round-barrier.ts",
      "src/net/build.ts",
      "src/net/frame.ts",
      "src/net/ring.ts",
      "src/net/vmq.ts",
      "src/net/capture.ts",
      "src/net/coalesce.ts",
      "src/net/experiment.ts",
      "src/net/lso.ts",
      "src/net/receive.ts",
    ],
  },
  storage: {
    mutate: ["src/storage/**/*.ts"],
    testFiles: ["test/storage-!(cli|tour|qemu|crash|direct-io).test.ts"],
    // A mutant that hangs a test counts as detected (Timeout) whether it is
    // stopped 15 s or 60 s past its tests' expected time, and its tests take
    // seconds: each one waited out to the 60 s default cost a minute.
    timeoutMS: 15_000,
    // Committed results cover these files only (docs/testing.md, its partial runs).
    scored: [
      "src/storage/block-file.ts",
      "src/storage/channel-file.ts",
      "src/storage/check.ts",
      "src/storage/destination.ts",
      "src/storage/direct-file.ts",
      "src/storage/disk-image.ts",
      "src/storage/errors.ts",
      "src/storage/format.ts",
      "src/storage/geometry.ts",
      "src/storage/info.ts",
      "src/storage/io-run.ts",
      "src/storage/io-spec.ts",
      "src/storage/kernels.ts",
      "src/storage/open.ts",
      "src/storage/operations.ts",
      "src/storage/passthrough-lock.ts",
      "src/storage/tasks.ts",
      "src/storage/vm.ts",
      "src/storage/vhd.ts:1-343",
      "src/storage/vhd.ts:344-593",
      "src/storage/vhd.ts:594-697",
      "src/storage/vhd.ts:698-1053",
      "src/storage/vhd.ts:1054-1217",
    ],
  },
  csv: {
    mutate: ["src/csv/**/*.ts"],
    // Also left out: the tests whose target or nodes are child processes
    // (the command's, through test/support/csv-cluster.ts and csv-target.ts:
    // tour, live-handover, redirected-cli, coordinator-kills,
    // deposed-coordinator, status-failover, vms, target) and the benchmarks
    // (bench, bench-suite), which start node processes too; a mutant lives
    // in the test's own thread, where none of their cluster runs. And
    // direct-io and redirected, whose nodes run here but heartbeat every
    // 50 ms and renew the lease through the target: direct-io counts the
    // bytes a write sends through the target and finds a renewal's 512 when
    // instrumentation slows the write past a heartbeat; redirected measures
    // a throttled link's bandwidth.
    testFiles: [
      "test/csv-!(cli|failover|tour|live-handover|redirected-cli|coordinator-kills|deposed-coordinator|status-failover|vms|target|bench|bench-suite|direct-io|redirected).test.ts",
    ],
    // The target client's mutants that never end wait for a reply a
    // mutated tag or check never delivers, with no deadline of their own:
    // each one waited out to the 60 s default cost a minute with the
    // machine idle (26 of the first 647 tested). A Timeout counts as
    // detected whether it comes 15 s or 60 s late.
    timeoutMS: 15_000,
    // Committed results cover these files only (docs/testing.md, its partial runs).
    scored: [
      "src/csv/acks.ts",
      "src/csv/check.ts",
      "src/csv/checksum.ts",
      "src/csv/control-client.ts",
      "src/csv/control-socket.ts",
      "src/csv/control.ts",
      "src/csv/direct-lun.ts",
      "src/csv/epoch-log.ts",
      "src/csv/errors.ts",
      "src/csv/fenced-batch.ts",
      "src/csv/file-batch.ts",
      "src/csv/file-entry.ts",
      "src/csv/file-write.ts",
      "src/csv/format-lun.ts",
      "src/csv/io-thread.ts",
      "src/csv/io-threads.ts",
      "src/csv/journal.ts",
      "src/csv/layout.ts",
      "src/csv/lease.ts",
      "src/csv/lun.ts",
      "src/csv/protocol.ts",
      "src/csv/redirected-io.ts",
      "src/csv/registration-board.ts",
      "src/csv/reservations.ts",
      "src/csv/storage-path.ts",
      "src/csv/storm.ts",
      "src/csv/superblock.ts",
      "src/csv/target-client.ts",
      "src/csv/target.ts",
      "src/csv/timeline.ts",
      "src/csv/utf8.ts",
      "src/csv/vm-report.ts",
      "src/csv/vm-verify.ts",
      "src/csv/vm.ts",
      "src/csv/volume.ts",
      "src/csv/write-fence.ts",
    ],
  },
  migration: {
    mutate: ["src/migration/**/*.ts"],
    // Left out, beside the command line, tours, benchmarks, the sweep's
    // heat map and the TCP soak: the tests whose source or destination is a
    // child process (live-endpoints stops one with SIGSTOP; live-postcopy
    // runs both ends as processes; live-postcopy-recover cuts a TCP link
    // through a throttled proxy and waits for the reconnect), and those that
    // measure the wall clock over TCP, which instrumentation slows:
    // live-tcp, live-auto-converge
    // (a paced guest's write rate), live-throttle (a link's rate),
    // precopy-modes (virtual rounds against live ones on the wall clock),
    // precopy-limits (a stalled link's time limit, and the command in a
    // child process) and live-encodings (a vCPU worker writes while the
    // passes run, so how many there are and what each carries follows the
    // machine's speed). The live endpoints' frames, messages and codec are
    // checked on this thread by the live-frame and live-postcopy-frames
    // files, and the endpoints themselves (live/source.ts,
    // live/destination.ts) by live-destination-rules (a source that sends
    // frames by hand), live-source-rules, live-recovery-rules and
    // live-postcopy-rules (both ends on this thread, an idle guest the test
    // dirties itself, so no pass depends on the clock). Also left out: the tests of the kernels' wrappers in src/wasm
    // that the engine uses (page-kernel, page-rules, page-stream-edges,
    // multifd-header-rules, live-stream-kernel, xxh3): they import nothing
    // of src/migration, so they reach no mutant (the first run found none
    // for those then run) and would only lengthen every dry run.
    // quick-migration-saved-state's one test of the command runs it in
    // a child process; it reaches no mutant, so only the dry run pays for it.
    testFiles: [
      "test/migration-!(*cli*|*tour|*bench|live-tcp|live-soak|sweep-heatmap|live-endpoints|live-postcopy|live-postcopy-recover|live-auto-converge|live-throttle|live-encodings|precopy-modes|precopy-limits|page-kernel|page-rules|page-stream-edges|multifd-header-rules|live-stream-kernel|xxh3).test.ts",
      "test/quick-migration-saved-state.test.ts",
    ],
    // A mutant's covering tests take seconds (the longest file, content, 15 s
    // uninstrumented); a mutant that never ends is a loop (the pre-copy
    // driver's rounds, a codec's walk over a frame), which the hit limit
    // stops at once, or a wait with its own deadline (the vCPU runner's).
    // A Timeout counts as detected whether it comes 15 s or 60 s late.
    timeoutMS: 15_000,
    // Committed results cover these files only (docs/testing.md, its partial runs).
    scored: [
      "src/migration/auto-converge.ts",
      "src/migration/destination.ts",
      "src/migration/engine.ts",
      "src/migration/guest-image.ts",
      "src/migration/in-process-link.ts",
      "src/migration/live/backoff.ts",
      "src/migration/live/bandwidth-meter.ts",
      "src/migration/live/deadline.ts",
      "src/migration/live/destination.ts",
      "src/migration/live/errors.ts",
      "src/migration/live/frame-codec.ts",
      "src/migration/live/frame.ts",
      "src/migration/live/guest-image.ts",
      "src/migration/live/inbox.ts",
      "src/migration/live/link.ts",
      "src/migration/live/messages.ts",
      "src/migration/live/page-sender.ts",
      "src/migration/live/postcopy-backlog.ts",
      "src/migration/live/postcopy-guest.ts",
      "src/migration/live/postcopy-recovery.ts",
      "src/migration/live/source.ts:1-529",
      "src/migration/live/vcpu-runner.ts",
      "src/migration/migration-bitmap.ts",
      "src/migration/model.ts",
      "src/migration/multifd-channel.ts",
      "src/migration/options.ts",
      "src/migration/policy.ts",
      "src/migration/precopy/driver.ts",
      "src/migration/precopy/recorder.ts",
      "src/migration/qemu-iteration/iteration.ts",
      "src/migration/query-migrate.ts",
      "src/migration/quick/quick-migration.ts",
      "src/migration/quick/saved-state-transport.ts",
      "src/migration/quick/saved-state.ts",
      "src/migration/report.ts",
      "src/migration/sent-pages.ts",
      "src/migration/stream-pipeline.ts",
      "src/migration/stream-queue.ts",
      "src/migration/sweep.ts",
      "src/migration/tasks.ts",
      "src/migration/virtual-link.ts",
      "src/migration/virtual-postcopy.ts",
      "src/migration/virtual-run-state.ts",
      "src/migration/xbzrle-stats.ts",
    ],
  },
};

const name = process.env.HVLAB_MUTATE_ENGINE;
const engine = name === undefined ? undefined : ENGINES[name];
if (name !== undefined && engine === undefined) {
  throw new Error(
    `HVLAB_MUTATE_ENGINE: no engine '${name}' (engines: ${Object.keys(ENGINES).join(", ")})`,
  );
}
const label = name ?? "all";

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.mjs", related: false },
  mutate: [
    ...(engine && process.env.HVLAB_MUTATE_SCORED === "1" && engine.scored
      ? engine.scored
      : (engine?.mutate ?? Object.values(ENGINES).flatMap((e) => e.mutate))),
    // Declarations only: nothing in them runs.
    "!src/**/task-types.ts",
  ],
  testFiles: engine?.testFiles ?? [...new Set(Object.values(ENGINES).flatMap((e) => e.testFiles))],
  // No type checker by default: starting it (a whole-program build) took
  // ten minutes on a small machine, more than an engine's mutants take to
  // run. A mutant that would not type-check still runs (vitest strips
  // types) and is killed or survives on what it does. HVLAB_MUTATE_TYPECHECK=1
  // turns the checker on (it then checks each mutant's own file only).
  checkers: process.env.HVLAB_MUTATE_TYPECHECK === "1" ? ["typescript"] : [],
  tsconfigFile: "tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  // Each mutant runs only the tests that reached it in the first run.
  coverageAnalysis: "perTest",
  // A mutant of a module-level constant needs every test file reloaded and
  // run: far too dear on a small machine, so such mutants are left out.
  ignoreStatic: true,
  incremental: true,
  incrementalFile: `stryker-incremental/${label}.json`,
  thresholds: { high: 85, low: 70, break: 70 },
  concurrency: 1,
  // Added to 1.5 times a mutant's tests' unmutated time before it counts
  // as a Timeout (detected).
  timeoutMS: engine?.timeoutMS ?? 60_000,
  // The first run of every test, instrumented, on a small busy machine.
  dryRunTimeoutMinutes: 60,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${label}.html` },
  jsonReporter: { fileName: `reports/mutation/${label}.json` },
  // Under reports/ (ignored by git, Biome and the sandbox copy).
  tempDirName: `reports/.stryker-tmp-${label}`,
  cleanTempDir: "always",
};
