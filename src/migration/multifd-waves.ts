/** One channel's share of a wave: `count` pages of the list from `start`, its first packet's number. */
export interface WaveSlice {
  readonly start: number;
  readonly count: number;
  /** The channel that sends it. */
  readonly c: number;
  readonly packetNum: number;
}

/**
 * Cuts the pages of a list from `start` (of `count` in all) into the next
 * wave: one slice per channel, whole packets of `packetPages`, at most
 * `groupPages` a channel. A wave shorter than the channels' full share is
 * split evenly, so every channel carries its part (a last batch, or a guest
 * smaller than one batch, otherwise went to the first channel alone while
 * the others idled). Packet numbers run on across channels from `packetNum`.
 */
export function nextWave(
  start: number,
  count: number,
  channels: number,
  groupPages: number,
  packetPages: number,
  packetNum: number,
): WaveSlice[] {
  const wave = Math.min(count - start, groupPages * channels);
  const even = Math.ceil(Math.ceil(wave / channels) / packetPages) * packetPages;
  const perChannel = Math.max(packetPages, Math.min(groupPages, even));
  const slices: WaveSlice[] = [];
  let at = start;
  let num = packetNum;
  for (let c = 0; c < channels && at < count; c++) {
    const n = Math.min(perChannel, count - at);
    slices.push({ start: at, count: n, c, packetNum: num });
    num += Math.ceil(n / packetPages);
    at += n;
  }
  return slices;
}
