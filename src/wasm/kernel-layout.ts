/*
 * Layouts shared by AssemblyScript and TypeScript (a descriptor's fields,
 * a record's flags, a ring's header) are drawn once, in the module's source,
 * and exported by the module as immutable globals named LAYOUT_<NAME>. Each
 * wrapper lists the values it lays memory out with, and refuses a module
 * whose globals differ (or that exports one the wrapper does not check), so
 * a copy cannot drift silently: a stale build or an edit on one side only
 * fails at load, naming the constant.
 */

/** Thrown when a kernel module's layout differs from its wrapper's. */
export class KernelLayoutError extends Error {
  override name = "KernelLayoutError";
}

/** Prefix of the globals a module exports its layout constants as. */
export const LAYOUT_PREFIX = "LAYOUT_";

const checked = new WeakSet<object>();

/** Reads the LAYOUT_ globals of a module's exports, by name without the prefix. */
export function exportedLayout(exports: object): Map<string, number> {
  const layout = new Map<string, number>();
  for (const [name, value] of Object.entries(exports)) {
    if (!name.startsWith(LAYOUT_PREFIX) || !(value instanceof WebAssembly.Global)) continue;
    // Globals are u32 in the source; wasm hands them to JavaScript as i32.
    layout.set(name.slice(LAYOUT_PREFIX.length), Number(value.value) >>> 0);
  }
  return layout;
}

/**
 * Checks a module's exported layout against the wrapper's values (once per
 * instance).
 *
 * @throws KernelLayoutError naming every constant that is missing, extra or different.
 */
export function checkKernelLayout(
  module: string,
  exports: object,
  expected: Readonly<Record<string, number>>,
): void {
  if (checked.has(exports)) return;
  const actual = exportedLayout(exports);
  const problems: string[] = [];
  for (const [name, value] of Object.entries(expected)) {
    const found = actual.get(name);
    if (found === undefined) problems.push(`${name} is not exported`);
    else if (found !== value >>> 0) problems.push(`${name} is ${found}, the wrapper uses ${value}`);
  }
  for (const name of actual.keys()) {
    if (!(name in expected)) problems.push(`${name} is exported but not checked by the wrapper`);
  }
  if (problems.length > 0) {
    throw new KernelLayoutError(
      `kernel module '${module}' lays out memory differently from src/wasm/${module}.ts: ${problems.join("; ")} (rebuild with npm run build, or make the two agree)`,
    );
  }
  checked.add(exports);
}
