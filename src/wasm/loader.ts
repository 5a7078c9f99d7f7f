import { readFileSync } from "node:fs";
import { join } from "node:path";
import { STATIC_SLOT_BYTES, STATIC_SLOTS } from "../memory/layout.js";
import { packageRoot } from "../util/package-root.js";
import { KernelLayoutError } from "./kernel-layout.js";

/**
 * Every kernel module, by the file name of its source in assembly/ (each
 * top-level file there is one module, built to build/wasm/<name>.wasm). A
 * new module is added here, with its wrapper in src/wasm/ and a getter on
 * KernelContext; the loader refuses a build whose modules differ.
 */
export const KERNEL_NAMES = [
  "bandwidth",
  "checksum",
  "dirty",
  "lackey",
  "multifd",
  "page",
  "power",
  "receive",
  "rss",
  "segment",
  "storage",
  "stream",
  "walk",
  "workload",
] as const;

/** A kernel module's name. */
export type KernelName = (typeof KERNEL_NAMES)[number];

/** What scripts/build-wasm.mjs records about the modules it built. */
interface KernelManifest {
  readonly slotBytes: number;
  readonly slots: number;
  readonly target: string;
  readonly modules: Record<string, { slot: number; base: number; bytes: number }>;
}

/**
 * Refuses a build whose static slots differ from the ones src/memory/layout.ts
 * keeps free below the first region (scripts/build-wasm.mjs places each
 * module's static data in its slot and records the slots in the manifest).
 */
export function checkStaticSlots(built: {
  readonly slotBytes: number;
  readonly slots: number;
}): void {
  if (built.slotBytes !== STATIC_SLOT_BYTES || built.slots !== STATIC_SLOTS) {
    throw new KernelLayoutError(
      `kernel modules were built with ${built.slots} static slots of ${built.slotBytes} bytes, but src/memory/layout.ts reserves ${STATIC_SLOTS} of ${STATIC_SLOT_BYTES}: make scripts/build-wasm.mjs and layout.ts agree, and rebuild`,
    );
  }
}

/** Refuses a build whose modules are not exactly the ones the wrappers know. */
function checkBuiltModules(built: readonly string[]): void {
  const known: readonly string[] = KERNEL_NAMES;
  const extra = built.filter((name) => !known.includes(name));
  const missing = known.filter((name) => !built.includes(name));
  if (extra.length > 0 || missing.length > 0) {
    throw new Error(
      `kernel modules built differ from those src/wasm knows: ${[
        ...extra.map((name) => `'${name}' has no wrapper`),
        ...missing.map((name) => `'${name}' is not built`),
      ].join(", ")} (run npm run build; a new module needs its name in KERNEL_NAMES)`,
    );
  }
}

let manifest: KernelManifest | undefined;

/** The build's manifest of kernel modules and their static slots. */
export function kernelManifest(): KernelManifest {
  if (!manifest) {
    let read: KernelManifest;
    try {
      read = JSON.parse(
        readFileSync(join(packageRoot(), "build", "wasm", "manifest.json"), "utf8"),
      ) as KernelManifest;
    } catch {
      throw new Error("kernel modules are not built: run npm run build");
    }
    checkBuiltModules(Object.keys(read.modules));
    checkStaticSlots(read);
    manifest = read;
  }
  return manifest;
}

/** Every built kernel module's name (all of {@link KERNEL_NAMES}, checked against the build). */
export function kernelNames(): readonly KernelName[] {
  kernelManifest();
  return KERNEL_NAMES;
}

/** Thrown when a kernel aborts (an AssemblyScript assertion in a debug build). */
export class KernelAbortError extends Error {
  override name = "KernelAbortError";
}

const compiled = new Map<KernelName, WebAssembly.Module>();

/** Path of a built kernel module. */
export function kernelPath(name: KernelName): string {
  return join(packageRoot(), "build", "wasm", `${name}.wasm`);
}

/**
 * Compiles a kernel module once per thread and caches it. Modules are sent to
 * workers already compiled, so each is compiled once per process.
 *
 * @throws Error saying how to build the kernels when the module is missing.
 */
export function compileKernel(name: KernelName): WebAssembly.Module {
  const hit = compiled.get(name);
  if (hit) return hit;
  if (!(KERNEL_NAMES as readonly string[]).includes(name) || !(name in kernelManifest().modules)) {
    throw new Error(`no kernel module named '${name}' (built: ${kernelNames().join(", ")})`);
  }
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = new Uint8Array(readFileSync(kernelPath(name)));
  } catch {
    throw new Error(`kernel module '${name}' is not built: run npm run build`);
  }
  const module = new WebAssembly.Module(bytes);
  compiled.set(name, module);
  return module;
}

/** Compiles every kernel module (for handing to workers). */
export function compileAllKernels(): Record<KernelName, WebAssembly.Module> {
  const modules = {} as Record<KernelName, WebAssembly.Module>;
  for (const name of kernelNames()) modules[name] = compileKernel(name);
  return modules;
}

/** Reads an AssemblyScript string (UTF-16, length before it) for an abort message. */
function readString(memory: WebAssembly.Memory, pointer: number): string {
  if (pointer === 0) return "";
  const view = new DataView(memory.buffer);
  const bytes = view.getUint32(pointer - 4, true);
  return Buffer.from(memory.buffer, pointer, Math.min(bytes, 4096)).toString("utf16le");
}

/**
 * Instantiates a compiled kernel module on a shared memory. Instantiation
 * writes only the module's own static slot (checked at build time), so it
 * disturbs nothing that other modules or workers hold.
 */
export function instantiateKernel<Exports>(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): Exports {
  const instance = new WebAssembly.Instance(module, {
    env: {
      memory,
      abort(message: number, file: number, line: number, column: number): never {
        throw new KernelAbortError(
          `kernel aborted: ${readString(memory, message)} at ${readString(memory, file)}:${line}:${column}`,
        );
      },
    },
  });
  return instance.exports as Exports;
}
