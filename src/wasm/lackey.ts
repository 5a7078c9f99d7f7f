import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/lackey.ts (see that file for the line shapes and layouts). */
export interface LackeyExports {
  scan(
    text: number,
    from: number,
    to: number,
    records: number,
    capacity: number,
    addressBits: number,
    state: number,
  ): number;
}

/** Bytes of a scan's state block (drawn in assembly/lackey.ts). */
export const LACKEY_STATE_BYTES = 16;
/** Bytes of a trace record (the walk kernel's). */
export const LACKEY_RECORD_BYTES = 8;

/** Why a scan stopped. */
export const LackeyStop = {
  /** The text ended: nothing of a line is left, or a line cut by the text's end (no LF after `position`). */
  end: 0,
  /** A line of another shape (a message, a malformed line, a short one) starts at `position`. */
  otherLine: 1,
  /** The records region is full. */
  full: 2,
} as const;
/** A stop reason. */
export type LackeyStop = (typeof LackeyStop)[keyof typeof LackeyStop];

/** What a scan did. */
export interface LackeyScan {
  readonly stop: LackeyStop;
  /** Byte offset in the text region where the scan stopped, at a line's first byte. */
  readonly position: number;
  /** Records written from the records region's first byte. */
  readonly records: number;
  /** Lines turned into records. */
  readonly lines: number;
}

/** The lackey line scanner over a shared memory. */
export class LackeyKernel {
  private state = new Int32Array(0);
  private stateAt = -1;

  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: LackeyExports,
  ) {
    checkKernelLayout("lackey", k, {
      STATE_POSITION: 0,
      STATE_RECORDS: 4,
      STATE_LINES: 8,
      STATE_STOP: 12,
      STATE_BYTES: LACKEY_STATE_BYTES,
      RECORD_BYTES: LACKEY_RECORD_BYTES,
      STOP_END: LackeyStop.end,
      STOP_OTHER_LINE: LackeyStop.otherLine,
      STOP_FULL: LackeyStop.full,
      // src/paging/mmu.ts ACCESS: write, execute, user.
      ACCESS_WRITE: 1,
      ACCESS_EXECUTE: 2,
      ACCESS_USER: 4,
      MAX_HEX_DIGITS: 15,
    });
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): LackeyKernel {
    return new LackeyKernel(
      memory,
      instantiateKernel<LackeyExports>(compileKernel("lackey"), memory),
    );
  }

  /**
   * Scans the lines of `text` bytes [from, to) into at most `capacity`
   * records at the start of `records`, for a user address space of
   * `addressBits` bits (47 with 4-level paging, 56 with 5).
   *
   * @throws RegionBoundsError naming the region when a range does not fit in it.
   * @throws RangeError for a bad address width or capacity.
   */
  scan(
    text: Region,
    from: number,
    to: number,
    records: Region,
    capacity: number,
    addressBits: number,
    state: Region,
  ): LackeyScan {
    if (!Number.isSafeInteger(to) || to < from) {
      throw new RangeError(`lackey scan: text end ${to} is before its start ${from}`);
    }
    if (addressBits !== 47 && addressBits !== 56) {
      throw new RangeError(`lackey scan: address width must be 47 or 56 bits, not ${addressBits}`);
    }
    if (!Number.isInteger(capacity) || capacity < 2 || capacity > 2 ** 28) {
      throw new RangeError(`lackey scan: capacity must be 2 to 2^28 records, not ${capacity}`);
    }
    const textAt = text.check(from, to - from, "lackey text") - from;
    const recordsAt = records.check(0, capacity * LACKEY_RECORD_BYTES, "lackey records");
    const stateAt = state.check(0, LACKEY_STATE_BYTES, "lackey scan state");
    const stop = this.k.scan(textAt, from, to, recordsAt, capacity, addressBits, stateAt);
    const view = this.stateView(stateAt);
    return {
      stop: stop as LackeyStop,
      position: view[0] as number,
      records: view[1] as number,
      lines: view[2] as number,
    };
  }

  private stateView(at: number): Int32Array {
    if (at !== this.stateAt || this.state.buffer !== this.memory.buffer) {
      this.state = new Int32Array(this.memory.buffer, at, 4);
      this.stateAt = at;
    }
    return this.state;
  }
}
