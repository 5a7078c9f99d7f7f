/**
 * Job data and results travel through Redis as JSON, which has no
 * Infinity or NaN (an unlimited link's bandwidth, a migration that never
 * converged), nor negative zero: each is carried as `{"$number": "Infinity"}`
 * (or "-Infinity", "NaN", "-0") and restored on the other side, so a
 * distributed run's records equal a local run's, bit for bit.
 */

const NUMBER_KEY = "$number";
const NON_FINITE: Readonly<Record<string, number>> = {
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
  NaN: Number.NaN,
  "-0": -0,
};

/** Deepest nesting carried; deeper data is refused rather than recursed into. */
export const MAX_DEPTH = 32;

/** Thrown for data that cannot travel as a job (too deep, or not plain data). */
export class CodecError extends TypeError {
  override name = "CodecError";
}

/** `value` as plain JSON data, with non-finite numbers wrapped. */
export function toWire(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new CodecError(`data nested deeper than ${MAX_DEPTH} levels`);
  if (typeof value === "number") {
    if (Object.is(value, -0)) return { [NUMBER_KEY]: "-0" };
    return Number.isFinite(value) ? value : { [NUMBER_KEY]: String(value) };
  }
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (value === undefined) return undefined;
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    return Array.from(value as ArrayLike<unknown>, (item) => toWire(item, depth + 1));
  }
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      const wired = toWire(item, depth + 1);
      if (wired !== undefined) setOwn(out, key, wired);
    }
    return out;
  }
  throw new CodecError(`a ${typeof value} cannot travel in a job`);
}

/** The inverse of {@link toWire}: wrapped numbers restored, everything else as it came. */
export function fromWire(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new CodecError(`data nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((item) => fromWire(item, depth + 1));
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    const [only] = entries;
    if (entries.length === 1 && only && only[0] === NUMBER_KEY && typeof only[1] === "string") {
      const number = NON_FINITE[only[1]];
      if (number === undefined) throw new CodecError(`'${only[1]}' is not a non-finite number`);
      return number;
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of entries) setOwn(out, key, fromWire(item, depth + 1));
    return out;
  }
  return value;
}

/**
 * Sets `key` as an own property: a plain assignment to `__proto__` (a key
 * JSON.parse makes like any other) would replace the object's prototype and
 * drop the key, so the data would not arrive as it was sent.
 */
function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}
