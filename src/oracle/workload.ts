import type { ResolvedWorkload } from "../workload/spec.js";
import { GOLDEN, mix64, vcpuState } from "../workload/splitmix.js";
import { zipfConstants, zipfH, zipfHIntegral, zipfHIntegralInverse } from "../workload/zipf.js";

const MASK64 = (1n << 64n) - 1n;

/** One guest write as the oracle sees it. */
export interface OracleWrite {
  readonly page: number;
  /** In content mode: byte offset within the page and the u64 written. */
  readonly offset?: number;
  readonly value?: bigint;
}

/**
 * The plain TypeScript oracle for assembly/workload.ts: the same generator
 * with BigInt arithmetic, one write at a time.
 */
export class WorkloadOracle {
  private state: bigint;
  private cursor = 0;

  constructor(
    private readonly workload: ResolvedWorkload,
    seed: number,
    vcpu: number,
    private readonly content: boolean,
  ) {
    this.state = vcpuState(seed, vcpu);
  }

  private next(): bigint {
    this.state = (this.state + GOLDEN) & MASK64;
    return mix64(this.state);
  }

  private below(r32: bigint, n: number): number {
    return Number((r32 * BigInt(n)) >> 32n);
  }

  private zipfRank(): number {
    const n = this.workload.pages;
    const z = zipfConstants(n, this.workload.zipfExponent);
    for (;;) {
      const u01 = Number(this.next() >> 11n) * 2 ** -53;
      const u = z.hIntegralN + u01 * (z.hIntegralX1 - z.hIntegralN);
      const x = zipfHIntegralInverse(u, z.s);
      let k = Math.floor(x + 0.5);
      if (k < 1) k = 1;
      else if (k > n) k = n;
      if (k - x <= z.sDiv || u >= zipfHIntegral(k + 0.5, z.s) - zipfH(k, z.s)) return k;
    }
  }

  /** The next write. */
  write(): OracleWrite {
    const w = this.workload;
    let page: number;
    if (w.kind === "zipf") {
      page = Number((BigInt(this.zipfRank() - 1) * BigInt(w.scatter)) % BigInt(w.pages));
    } else {
      const r = this.next();
      if (w.kind === "hotset") {
        const threshold = BigInt(Math.round(w.hotFraction * 2 ** 32));
        page =
          (r & 0xffffffffn) < threshold
            ? w.hotBase + this.below(r >> 32n, w.hotPages)
            : this.below(r >> 32n, w.pages);
      } else if (w.kind === "sequential") {
        page = this.cursor;
        this.cursor = (this.cursor + (w.stride % w.pages || 1)) % w.pages;
      } else {
        page = this.below(r >> 32n, w.pages);
      }
    }
    if (!this.content) return { page };
    const value = this.next();
    const offset = Number(value & 0xffffffffn) & (2 ** w.pageShift - 8);
    return { page, offset, value };
  }
}
