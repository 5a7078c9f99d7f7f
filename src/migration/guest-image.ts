import type { Region } from "../memory/region.js";
import type { PageKernel } from "../wasm/page.js";

/** Pages seeded per kernel call: bounded work per call on a guest of any size. */
const SEED_BATCH = 65_536;

/**
 * Writes a content-mode guest's starting image: seeded data with a share of
 * zero pages (`zeroFraction`), the same for the same seed.
 */
export function seedGuestImage(
  kernel: PageKernel,
  ram: Region,
  pageShift: number,
  pages: number,
  seed: number,
  zeroFraction: number,
): void {
  for (let first = 0; first < pages; first += SEED_BATCH) {
    kernel.seedPages(
      ram,
      pageShift,
      first,
      Math.min(SEED_BATCH, pages - first),
      seed,
      zeroFraction,
    );
  }
}

/** A seeded device-state blob (what the VM's devices would serialize). */
export function deviceState(bytes: number, seed: number): Uint8Array {
  const blob = new Uint8Array(bytes);
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    blob[i] = state & 0xff;
  }
  return blob;
}
