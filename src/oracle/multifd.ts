/**
 * The plain TypeScript oracle for the multifd kernels (assembly/multifd.ts):
 * QEMU's MultiFDPacket_t header as the sender writes it and the receiver's
 * checks of it, one field and one page at a time.
 */
import { isZeroOneByOne } from "./page.js";
import { xxh3Long } from "./xxh3.js";

const HEADER = 320;
const MAGIC = 0x11223344;
const VERSION = 1;
const RAMBLOCK = "pc.ram";

/** What the sender produces for one packet. */
export interface MultifdPacketOracle {
  readonly header: Uint8Array;
  readonly normal: number[];
  readonly zero: number[];
}

/**
 * The header the sender writes for `list` (at most `alloc` pages) of the
 * guest RAM `ram`, zero pages detected when `zeroPages`.
 */
export function multifdSendOracle(
  ram: Uint8Array,
  pageShift: number,
  list: readonly number[],
  alloc: number,
  zeroPages: boolean,
  packetNum: number,
): MultifdPacketOracle {
  const pageBytes = 2 ** pageShift;
  const normal: number[] = [];
  const zero: number[] = [];
  for (const page of list.slice(0, alloc)) {
    const bytes = ram.subarray(page * pageBytes, (page + 1) * pageBytes);
    if (zeroPages && isZeroOneByOne(bytes)) zero.push(page);
    else normal.push(page);
  }
  const header = new Uint8Array(HEADER + 8 * (normal.length + zero.length));
  const view = new DataView(header.buffer);
  view.setUint32(0, MAGIC);
  view.setUint32(4, VERSION);
  view.setUint32(8, 0);
  view.setUint32(12, alloc);
  view.setUint32(16, normal.length);
  view.setUint32(20, normal.length * pageBytes);
  view.setBigUint64(24, BigInt(packetNum));
  view.setUint32(32, zero.length);
  for (let i = 0; i < RAMBLOCK.length; i++) header[64 + i] = RAMBLOCK.charCodeAt(i);
  [...normal, ...zero].forEach((page, i) => {
    view.setBigUint64(HEADER + 8 * i, BigInt(page) * BigInt(pageBytes));
  });
  return { header, normal, zero };
}

/** The receiver's verdict on a header: the pages it accepts, or the code and byte offset of the first fault. */
export type MultifdCheckOracle =
  | { readonly ok: true; readonly normal: number; readonly zero: number; readonly pages: number[] }
  | { readonly ok: false; readonly code: number; readonly offset: number };

/**
 * Checks a received header as the receiver must, in the same order as the
 * kernel: length, magic, version, flags, pages_alloc at most `alloc`, the
 * page counts, next_packet_size, the RAM block name, then every offset.
 */
export function multifdCheckOracle(
  packet: Uint8Array,
  pageShift: number,
  pages: number,
  alloc: number,
): MultifdCheckOracle {
  const fail = (code: number, offset: number): MultifdCheckOracle => ({ ok: false, code, offset });
  if (packet.length < HEADER) return fail(-1, packet.length);
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  if (view.getUint32(0) !== MAGIC) return fail(-2, 0);
  if (view.getUint32(4) !== VERSION) return fail(-3, 4);
  if (view.getUint32(8) !== 0) return fail(-4, 8);
  const pagesAlloc = view.getUint32(12);
  if (pagesAlloc > alloc) return fail(-5, 12);
  const normal = view.getUint32(16);
  if (normal > pagesAlloc) return fail(-5, 16);
  const zero = view.getUint32(32);
  if (zero > pagesAlloc - normal) return fail(-5, 32);
  if (view.getUint32(20) !== normal * 2 ** pageShift) return fail(-6, 20);
  let name = "";
  for (let i = 64; i < 64 + 8 && packet[i] !== 0; i++) name += String.fromCharCode(packet[i] ?? 0);
  if (name !== RAMBLOCK || packet[64 + RAMBLOCK.length] !== 0) return fail(-7, 64);
  const entries = normal + zero;
  if (packet.length < HEADER + 8 * entries) return fail(-1, packet.length);
  const accepted: number[] = [];
  const pageBytes = BigInt(2 ** pageShift);
  for (let i = 0; i < entries; i++) {
    const offset = view.getBigUint64(HEADER + 8 * i);
    if (offset % pageBytes !== 0n || offset / pageBytes >= BigInt(pages)) {
      return fail(-8, HEADER + 8 * i);
    }
    accepted.push(Number(offset / pageBytes));
  }
  return { ok: true, normal, zero, pages: accepted };
}

/**
 * The page hash table after hashing the pages `list` names: XXH3-64 of each
 * listed page of `ram` into its slot of a copy of `table`, one page at a
 * time. Returns the table, or the index of the first page number past RAM
 * (nothing from it on hashed).
 */
export function hashListedOracle(
  ram: Uint8Array,
  pageShift: number,
  list: readonly number[],
  table: readonly bigint[],
): { readonly table: bigint[]; readonly badIndex: number | null } {
  const pageBytes = 2 ** pageShift;
  const pages = Math.floor(ram.length / pageBytes);
  const out = [...table];
  for (const [i, page] of list.entries()) {
    if (page >= pages) return { table: out, badIndex: i };
    out[page] = xxh3Long(ram.subarray(page * pageBytes, (page + 1) * pageBytes));
  }
  return { table: out, badIndex: null };
}
