import { readFileSync } from "node:fs";
import { arch, cpus, platform, release, totalmem } from "node:os";
import { packageRoot } from "../util/package-root.js";

/** The machine and runtime a benchmark ran on, reported with every result. */
export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly os: string;
  readonly arch: string;
  readonly node: string;
  readonly v8: string;
  readonly hvlab: string;
  readonly tinybench: string;
}

function versionOf(manifest: string): string {
  try {
    return (JSON.parse(readFileSync(manifest, "utf8")) as { version?: string }).version ?? "?";
  } catch {
    return "?";
  }
}

/**
 * A library peer's name with the version that ran, e.g. "@node-rs/xxhash
 * 1.7.8": a figure measured against a library means little without it.
 */
export function libraryName(pkg: string): string {
  return `${pkg} ${versionOf(`${packageRoot()}/node_modules/${pkg}/package.json`)}`;
}

/** Describes this machine and runtime. */
export function machineInfo(): MachineInfo {
  const root = packageRoot();
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    memoryBytes: totalmem(),
    os: `${platform()} ${release()}`,
    arch: arch(),
    node: process.versions.node,
    v8: process.versions.v8,
    hvlab: versionOf(`${root}/package.json`),
    tinybench: versionOf(`${root}/node_modules/tinybench/package.json`),
  };
}
