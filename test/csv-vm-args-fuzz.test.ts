import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeVmState,
  MAX_VM_DISK_BYTES,
  parseVmStart,
  parseVmStop,
  VmArgumentError,
} from "../src/csv/vm.js";
import { checkIoSpec } from "../src/storage/io-spec.js";

// The VM commands of a node's control socket and the state file that moves
// with a VM: every input either parses into checked values or is refused
// with a VmArgumentError naming the field; nothing else escapes.

const RUNS = 100_000;

const goodStart = {
  vm: "vm1",
  vhd: "vm1.vhd",
  type: "dynamic",
  size: 4 << 20,
  rw: "randrw",
  bs: 4096,
  iodepth: 4,
  seed: 7,
  state: "/tmp/vm1.state",
};

/** A valid start record with one field replaced, removed or added. */
const mutatedStart = fc.oneof(
  fc
    .record({
      key: fc.constantFrom(...Object.keys(goodStart), "runtimeMs", "rwmixread", "x"),
      value: fc.anything(),
    })
    .map(({ key, value }) => ({ ...goodStart, [key]: value })),
  fc.constantFrom(...Object.keys(goodStart)).map((key) => {
    const copy: Record<string, unknown> = { ...goodStart };
    delete copy[key];
    return copy;
  }),
  fc
    .record({
      bs: fc.integer({ min: -1, max: (1 << 20) + 1 }),
      size: fc.integer({ min: 0, max: MAX_VM_DISK_BYTES + 1 }),
      iodepth: fc.integer({ min: -1, max: 2000 }),
      seed: fc.double(),
    })
    .map((r) => ({ ...goodStart, ...r })),
);

function expectChecked(parse: () => unknown): unknown {
  try {
    return parse();
  } catch (error) {
    expect(error).toBeInstanceOf(VmArgumentError);
    expect((error as Error).message.length).toBeGreaterThan(0);
    return undefined;
  }
}

describe("VM control arguments and state files", () => {
  it("parseVmStart: random values and mutated records give a VmArgumentError or a checked start", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue(), mutatedStart), (args) => {
        const start = expectChecked(() => parseVmStart(args)) as
          | ReturnType<typeof parseVmStart>
          | undefined;
        if (!start) return;
        expect(() => checkIoSpec(start.spec)).not.toThrow();
        expect(start.spec.verify).toBe(true);
        if (start.create) {
          expect(start.create.size % 512).toBe(0);
          expect(start.create.size).toBeLessThanOrEqual(MAX_VM_DISK_BYTES);
        }
        if (start.state !== undefined) expect(start.state.startsWith("/")).toBe(true);
      }),
      { numRuns: RUNS },
    );
    expect(parseVmStart(goodStart).create).toEqual({ type: "dynamic", size: 4 << 20 });
  });

  it("parseVmStop: random values give a VmArgumentError or a checked stop", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.anything(), fc.record({ vm: fc.anything(), state: fc.anything() })),
        (args) => {
          const stop = expectChecked(() => parseVmStop(args)) as { vm: string } | undefined;
          if (stop) expect(typeof stop.vm).toBe("string");
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("decodeVmState: random and mutated files give a VmArgumentError or a table of the size they say", () => {
    const good = new Uint8Array(16 + 8 * 4);
    const view = new DataView(good.buffer);
    view.setUint32(0, 0x4d564348, true);
    view.setUint32(4, 4096, true);
    view.setUint32(8, 8, true);
    view.setUint32(12, 7, true);
    view.setUint32(16, 3, true);
    expect(decodeVmState("good", good).table[0]).toBe(3);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          fc
            .record({ at: fc.nat(good.length - 1), byte: fc.nat(255), cut: fc.nat(good.length) })
            .map(({ at, byte, cut }) => {
              const copy = good.slice(0, cut === 0 ? good.length : cut);
              if (at < copy.length) copy[at] = byte;
              return copy;
            }),
        ),
        (bytes) => {
          const state = expectChecked(() => decodeVmState("fuzz", bytes)) as
            | ReturnType<typeof decodeVmState>
            | undefined;
          if (!state) return;
          expect(state.table.length * 4 + 16).toBe(bytes.length);
          expect(state.bs % 512).toBe(0);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
