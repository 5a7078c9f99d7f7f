import type { Lun } from "../../src/csv/lun.js";

/** One write (its offset and length) or one flush, in the order the LUN saw them. */
export type LunStep = ["write", number, number] | ["flush"];

const PAGE = 4096;

/**
 * A LUN held sparsely in memory (only the pages written take memory, so a
 * test can format a volume of a gigabyte) that logs every write and flush.
 */
export class LoggedLun implements Lun {
  readonly steps: LunStep[] = [];
  private readonly pages = new Map<number, Uint8Array>();

  constructor(
    readonly bytes: number,
    readonly name = "/sparse/lun",
  ) {}

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    const out = new Uint8Array(length);
    this.walk(offset, length, (page, within, at, n) => {
      const p = this.pages.get(page);
      if (p) out.set(p.subarray(within, within + n), at);
    });
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length);
    this.steps.push(["write", offset, data.length]);
    this.walk(offset, data.length, (page, within, at, n) => {
      let p = this.pages.get(page);
      if (!p) {
        p = new Uint8Array(PAGE);
        this.pages.set(page, p);
      }
      p.set(data.subarray(at, at + n), within);
    });
  }

  async flush(): Promise<void> {
    this.steps.push(["flush"]);
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.bytes)
      throw new RangeError(`${this.name}: bytes ${offset}..${offset + length} are past its end`);
  }

  /** Calls `visit` for each page piece of `[offset, offset + length)`. */
  private walk(
    offset: number,
    length: number,
    visit: (page: number, within: number, at: number, n: number) => void,
  ): void {
    for (let at = 0; at < length; ) {
      const page = Math.floor((offset + at) / PAGE);
      const within = offset + at - page * PAGE;
      const n = Math.min(PAGE - within, length - at);
      visit(page, within, at, n);
      at += n;
    }
  }
}
