import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/walk.ts (see that file for the context layout). */
export interface WalkExports {
  run(ctx: number, trace: number, from: number, to: number): number;
  translate(ctx: number, vaLow: number, vaHigh: number, kind: number): number;
  invalidatePage(ctx: number, vaLow: number, vaHigh: number): void;
  invalidateGuestPhysical(ctx: number, gpaLow: number, gpaHigh: number): void;
  flush(ctx: number, what: number): void;
}

/** Instantiates the walk kernel on a shared memory. */
export function instantiateWalk(memory: WebAssembly.Memory): WalkExports {
  return instantiateKernel<WalkExports>(compileKernel("walk"), memory);
}
