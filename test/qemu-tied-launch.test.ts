import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { findExecutable, tiedToParent, whyNotExecutable } from "../src/qemu/tied-launch.js";
import { hvlab, requireTool, startHvlab } from "./support/cli.js";
import { until } from "./support/until.js";

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The processes whose parent is `pid`, and their command names (from /proc/PID/stat). */
function childrenOf(pid: number): { pid: number; comm: string }[] {
  const found: { pid: number; comm: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // The name is in parentheses and may hold any byte: the fields follow the last ')'.
    const close = stat.lastIndexOf(")");
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    if (ppid === pid)
      found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf("(") + 1, close) });
  }
  return found;
}

/** Whether `pid` runs: a zombie (dead, not yet reaped by whoever adopted it) does not. */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

describe("finding an executable as a shell would", () => {
  it("looks a bare name up on PATH, in order, and takes only executable files", () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-exe-"));
    dirs.push(dir);
    const one = mkdtempSync(join(dir, "one-"));
    const two = mkdtempSync(join(dir, "two-"));
    writeFileSync(join(one, "tool"), "#!/bin/sh\n");
    writeFileSync(join(two, "tool"), "#!/bin/sh\n");
    chmodSync(join(two, "tool"), 0o755);
    // Not executable in the first folder: the second's.
    expect(findExecutable("tool", `${one}:${two}`)).toBe(join(two, "tool"));
    chmodSync(join(one, "tool"), 0o755);
    expect(findExecutable("tool", `${one}:${two}`)).toBe(join(one, "tool"));
    // A folder of the name is not a program; an empty PATH entry is skipped.
    expect(findExecutable("one-", `:${dir}`)).toBeUndefined();
    expect(findExecutable("missing", `${one}:${two}`)).toBeUndefined();
    // A name with a slash is not looked up.
    expect(findExecutable(join(two, "tool"), "")).toBe(join(two, "tool"));
    expect(findExecutable("/nonexistent/qemu-system-x86_64")).toBeUndefined();
    expect(findExecutable(`${dir}/`)).toBeUndefined();
  });

  it("says why a path cannot run: missing, a folder, a device, no execute permission", () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-exe-"));
    dirs.push(dir);
    const script = join(dir, "qemu");
    writeFileSync(script, "#!/bin/sh\n");
    chmodSync(script, 0o644);
    expect(whyNotExecutable(join(dir, "missing"))).toBe("no such file");
    expect(whyNotExecutable(dir)).toBe("it is a directory");
    expect(whyNotExecutable("/dev/null")).toBe("it is not a regular file");
    expect(whyNotExecutable(script)).toBe("it is not executable");
    chmodSync(script, 0o755);
    expect(whyNotExecutable(script)).toBeUndefined();
  });

  it("--qemu naming a folder or a file it cannot run says which, before anything starts", () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-exe-"));
    dirs.push(dir);
    const script = join(dir, "qemu");
    writeFileSync(script, "#!/bin/sh\n");
    chmodSync(script, 0o644);
    for (const [binary, why] of [
      [dir, "it is a directory"],
      [script, "it is not executable"],
    ] as const) {
      const run = hvlab(["qemu", "migrate", "--guest", "64MiB", "--qemu", binary]);
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`${binary} cannot run: ${why}`);
    }
  });

  it("wraps the command in setpriv when there is one, and runs it as it is when not", () => {
    expect(tiedToParent("/usr/bin/qemu", ["-m", "64M"], "/usr/bin/setpriv")).toEqual({
      command: "/usr/bin/setpriv",
      args: ["--pdeathsig", "KILL", "--", "/usr/bin/qemu", "-m", "64M"],
    });
    expect(tiedToParent("/usr/bin/qemu", ["-m", "64M"], null)).toEqual({
      command: "/usr/bin/qemu",
      args: ["-m", "64M"],
    });
  });
});

const hasSetpriv = requireTool("setpriv");

describe.skipIf(!hasSetpriv)("a program tied to its parent dies with it", () => {
  it("a SIGKILLed parent takes its tied child along; an untied one is left behind", async () => {
    const module = new URL("../src/qemu/tied-launch.ts", import.meta.url).pathname;
    // A parent that starts one tied and one untied `sleep 60`, says their PIDs, and waits.
    const script = `
      import { spawn } from "node:child_process";
      import { findExecutable, tiedToParent } from ${JSON.stringify(module.replace(/\/src\/(.*)\.ts$/, "/dist/src/$1.js"))};
      const sleep = findExecutable("sleep");
      const tied = tiedToParent(sleep, ["60"]);
      const a = spawn(tied.command, tied.args, { stdio: "ignore" });
      const b = spawn(sleep, ["60"], { stdio: "ignore", detached: true });
      b.unref();
      console.log(JSON.stringify({ tied: a.pid, untied: b.pid }));
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(parent);
    const [line] = (await once(parent.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
    const { tied, untied } = JSON.parse(line.toString()) as { tied: number; untied: number };
    try {
      // setpriv became sleep in the same process: the PID runs sleep.
      await until(
        () => readFileSync(`/proc/${tied}/comm`, "utf8").trim() === "sleep",
        5000,
        "exec",
      );
      parent.kill("SIGKILL");
      await once(parent, "exit");
      await until(() => !alive(tied), 5000, "the tied child's death");
      expect(alive(untied)).toBe(true);
    } finally {
      if (alive(untied)) process.kill(untied, "SIGKILL");
    }
  });
});

const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu || !hasSetpriv)("hvlab killed with SIGKILL leaves no QEMU behind", () => {
  it("hvlab qemu predict's QEMU processes die with it", async () => {
    // Its temporary folder is left behind (nothing of hvlab runs after a
    // SIGKILL): it goes in one of this test's, removed after it.
    const tmp = mkdtempSync(join(tmpdir(), "hvlab-killed-"));
    dirs.push(tmp);
    const run = startHvlab(
      [
        "qemu",
        "predict",
        "--guest",
        "64MiB",
        "--rate",
        "1000",
        "--bandwidth",
        "100MiB",
        "--calc-times",
        "1",
        "--warmup",
        "200",
      ],
      { TMPDIR: tmp },
    );
    children.push(run.child);
    const hvlab = run.child.pid as number;
    let qemu: { pid: number; comm: string }[] = [];
    await until(
      () => {
        qemu = childrenOf(hvlab).filter((c) => c.comm.startsWith("qemu-system"));
        return qemu.length > 0;
      },
      60_000,
      "a QEMU under hvlab",
    );
    run.child.kill("SIGKILL");
    await run.exited;
    for (const { pid } of qemu) await until(() => !alive(pid), 5000, `QEMU ${pid}'s death`);
  }, 90_000);
});
