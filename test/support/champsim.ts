/** The fields of a ChampSim `input_instr` record that hvlab reads (ChampSim inc/trace_instruction.h). */
export interface ChampSimFields {
  readonly ip: bigint;
  readonly branch?: number;
  readonly taken?: number;
  /** destination_memory: at most 2 addresses (bytes 16 to 31). */
  readonly dst?: readonly bigint[];
  /** source_memory: at most 4 addresses (bytes 32 to 63). */
  readonly src?: readonly bigint[];
}

/**
 * One ChampSim record in the 64-byte layout (ip u64 little-endian at byte
 * 0, is_branch and branch_taken at 8 and 9, destination_memory at 16,
 * source_memory at 32), or the 65-byte one with `loadType` at byte 64.
 */
export function champsimRecord(
  { ip, branch = 0, taken = 0, dst = [], src = [] }: ChampSimFields,
  loadType?: number,
): Uint8Array {
  const bytes = new Uint8Array(loadType === undefined ? 64 : 65);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, ip, true);
  view.setUint8(8, branch);
  view.setUint8(9, taken);
  for (const [k, a] of dst.entries()) view.setBigUint64(16 + 8 * k, a, true);
  for (const [k, a] of src.entries()) view.setBigUint64(32 + 8 * k, a, true);
  if (loadType !== undefined) view.setUint8(64, loadType);
  return bytes;
}

/** The records one after another, as a trace file holds them. */
export function champsimTrace(records: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of records) {
    all.set(r, at);
    at += r.length;
  }
  return all;
}
