/** A seeded xorshift32 stream: only a fast, repeatable source of filler bytes. */
function xorshift(seed: number): () => number {
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}

/** Bytes of the repeating block a prefill copies across RAM. */
const BLOCK_BYTES = 64 * 1024;

/**
 * Gives a guest's RAM seeded, non-zero content before it runs: a 64 KiB
 * random block copied across memory, and each page stamped with its number
 * and the seed, so that every page differs and a misplaced page is caught.
 */
export function prefillGuest(ram: Uint8Array, pageBytes: number, seed: number): void {
  const next = xorshift(seed);
  const block = Math.min(BLOCK_BYTES, ram.length);
  const words = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  for (let at = 0; at + 4 <= block; at += 4) words.setUint32(at, next(), true);
  // Double the filled span each copy: a few memcpy calls for any size.
  for (let filled = block; filled < ram.length; filled *= 2) {
    ram.copyWithin(filled, 0, Math.min(filled, ram.length - filled));
  }
  for (let page = 0, at = 0; at + 8 <= ram.length; page++, at += pageBytes) {
    words.setUint32(at, page, true);
    words.setUint32(at + 4, seed >>> 0, true);
  }
}

/** A seeded device-state blob (registers, device queues) of `length` bytes. */
export function fillDeviceState(out: Uint8Array, seed: number): void {
  const next = xorshift(seed ^ 0x5eed);
  for (let at = 0; at < out.length; at++) out[at] = next() & 0xff;
}
