import { Cond, Reg, X86Assembler } from "./x86-assembler.js";

/*
 * The write guest: a multiboot (v0.6.96) ELF32 image that hvlab writes byte
 * by byte. QEMU's `-kernel` loads it (hw/i386/multiboot.c: load_multiboot,
 * which takes an ELF32 with the multiboot header in its first 8 KiB) and
 * enters it in 32-bit protected mode, paging off, interrupts off. The vCPU
 * fills its working set once (so no page is a zero page QEMU could skip),
 * then writes one word to a page of it per write, paced by the HPET, and
 * counts its writes at a fixed guest-physical address.
 *
 * Guest-physical layout (the file is loaded whole at 1 MiB):
 *
 *   0x00100000  ELF header (52 bytes) + one PT_LOAD program header (32)
 *   0x00100060  multiboot header: magic, flags, checksum
 *   0x00100080  parameter block (PARAM_*), written by hvlab, read by the guest
 *   0x00100100  code
 *   0x00101000  status page (STATUS_*), written by the guest, read over QMP
 *   0x00102000  stack (grows down from 0x00103000)
 *   0x01000000  working set: pages written by the guest (WORKING_SET_BASE)
 *
 * Status page:
 *
 *   +0   u64  writes done (the write counter)
 *   +8   u64  HPET ticks seen while writing (100 MHz: the guest's own clock)
 *   +16  u32  state: 0 not started, 1 filling the working set, 2 writing,
 *             3 stopped: the HPET is missing or not 100 MHz
 *   +20  u32  pages filled so far
 */

/** Where QEMU loads the image (the PT_LOAD segment's physical address). */
export const LOAD_ADDRESS = 0x0010_0000;
/** The multiboot header's address (4-byte aligned, within the first 8 KiB). */
export const MULTIBOOT_HEADER = LOAD_ADDRESS + 0x60;
/** The parameter block's address. */
export const PARAM_BLOCK = LOAD_ADDRESS + 0x80;
/** The first instruction. */
export const CODE_START = LOAD_ADDRESS + 0x100;
/** The status page: the write counter is its first 8 bytes. */
export const STATUS_PAGE = LOAD_ADDRESS + 0x1000;
/** The 64-bit little-endian write counter's guest-physical address. */
export const WRITE_COUNTER_ADDRESS = STATUS_PAGE;
/** The 64-bit count of HPET ticks (10 ns) the guest has seen while writing. */
export const CLOCK_TICKS_ADDRESS = STATUS_PAGE + 8;
/** The guest's state word (see {@link GuestState}). */
export const STATE_ADDRESS = STATUS_PAGE + 16;
/** Pages of the working set filled so far. */
export const FILLED_ADDRESS = STATUS_PAGE + 20;
/** The top of the guest's stack. */
const STACK_TOP = LOAD_ADDRESS + 0x3000;
/** Where write_one keeps the caller's ecx (the bottom of the stack page). */
const SAVE_SLOT = LOAD_ADDRESS + 0x2000;
/** The working set starts at 16 MiB, clear of the image and the BIOS areas. */
export const WORKING_SET_BASE = 0x0100_0000;
/** RAM left alone at the top of memory (firmware tables live there). */
export const TOP_RESERVE = 0x0010_0000;
/** The guest's page: it writes one word per 4 KiB page, as QEMU tracks them. */
export const GUEST_PAGE = 4096;
/** The HPET's registers (QEMU's pc machine maps it here: hw/timer/hpet.c). */
export const HPET_BASE = 0xfed0_0000;
/** QEMU's HPET counts every 10 ns (hw/timer/hpet.c: HPET_CLK_PERIOD). */
export const HPET_HZ = 100_000_000;
/** The period the capabilities register's high half must hold, femtoseconds. */
const HPET_PERIOD_FS = 10_000_000;

/** The guest's state word. */
export const GuestState = { notStarted: 0, filling: 1, writing: 2, noClock: 3 } as const;

/** Parameter block offsets (u32 each). */
const PARAM = {
  magic: 0,
  version: 4,
  pattern: 8,
  base: 12,
  pages: 16,
  hotPages: 20,
  hotThreshold: 24,
  seed: 28,
  cost: 32,
  creditCap: 36,
} as const;
/** "HVLP" little-endian: marks a parameter block. */
export const PARAM_MAGIC = 0x504c_5648;
/** The parameter block's version. */
export const PARAM_VERSION = 1;

/** The write patterns, as the guest's pattern word encodes them. */
export const GUEST_PATTERNS = ["uniform", "hotset", "sequential"] as const;
/** A write pattern. */
export type GuestPattern = (typeof GUEST_PATTERNS)[number];

/** The smallest and largest guest RAM the image supports. */
export const MIN_GUEST_RAM = 32 * 2 ** 20;
export const MAX_GUEST_RAM = 3 * 2 ** 30;
/** The fastest paced rate (100 HPET ticks a write). */
export const MAX_WRITE_RATE = 1_000_000;

/** What the guest does. */
export interface GuestSpec {
  /** Guest RAM, bytes (QEMU's `-m`). */
  readonly ramBytes: number;
  readonly pattern: GuestPattern;
  /** Pages written; default every page from 16 MiB to 1 MiB below the top. */
  readonly workingSetPages?: number;
  /** hotset: pages of the hot set (the first pages of the working set). */
  readonly hotPages?: number;
  /** hotset: share of writes that go to the hot set, 0 to 1. */
  readonly hotFraction?: number;
  /** Writes per second; 0 writes as fast as the vCPU runs. */
  readonly writesPerSecond: number;
  /** Seed of the xorshift32 generator (uniform, hotset). */
  readonly seed: number;
}

/** A guest spec that does not fit: the message names the field and the bound. */
export class GuestSpecError extends RangeError {
  override name = "GuestSpecError";
}

/** The largest working set a guest of `ramBytes` can have, in pages. */
export function maxWorkingSetPages(ramBytes: number): number {
  return Math.max(0, Math.floor((ramBytes - TOP_RESERVE - WORKING_SET_BASE) / GUEST_PAGE));
}

/** The spec with every default filled in and every field checked. */
export interface ResolvedGuestSpec extends Required<GuestSpec> {}

/** Checks a spec and fills its defaults; throws {@link GuestSpecError}. */
export function resolveGuestSpec(spec: GuestSpec): ResolvedGuestSpec {
  const { ramBytes } = spec;
  if (!Number.isSafeInteger(ramBytes) || ramBytes < MIN_GUEST_RAM || ramBytes > MAX_GUEST_RAM)
    throw new GuestSpecError(
      `guest RAM ${ramBytes} bytes is outside ${MIN_GUEST_RAM} to ${MAX_GUEST_RAM}`,
    );
  if (ramBytes % (2 * 2 ** 20) !== 0)
    throw new GuestSpecError(`guest RAM ${ramBytes} bytes is not a multiple of 2 MiB`);
  if (!GUEST_PATTERNS.includes(spec.pattern))
    throw new GuestSpecError(
      `pattern '${spec.pattern}' is not one of ${GUEST_PATTERNS.join(", ")}`,
    );
  const max = maxWorkingSetPages(ramBytes);
  const pages = spec.workingSetPages ?? max;
  if (!Number.isSafeInteger(pages) || pages < 1 || pages > max)
    throw new GuestSpecError(`working set of ${pages} pages is outside 1 to ${max} for this RAM`);
  const hotPages = spec.hotPages ?? Math.max(1, Math.floor(pages / 64));
  if (!Number.isSafeInteger(hotPages) || hotPages < 1 || hotPages > pages)
    throw new GuestSpecError(`hot set of ${hotPages} pages is outside 1 to ${pages}`);
  const hotFraction = spec.hotFraction ?? 0.9;
  if (!(hotFraction >= 0 && hotFraction <= 1))
    throw new GuestSpecError(`hot fraction ${hotFraction} is outside 0 to 1`);
  const rate = spec.writesPerSecond;
  if (!Number.isFinite(rate) || rate < 0 || rate > MAX_WRITE_RATE || (rate > 0 && rate < 1))
    throw new GuestSpecError(`write rate ${rate}/s is outside 1 to ${MAX_WRITE_RATE} (or 0)`);
  if (!Number.isSafeInteger(spec.seed) || spec.seed < 0 || spec.seed > 0xffff_ffff)
    throw new GuestSpecError(`seed ${spec.seed} is outside 0 to ${0xffff_ffff}`);
  return {
    ramBytes,
    pattern: spec.pattern,
    workingSetPages: pages,
    hotPages,
    hotFraction,
    writesPerSecond: rate,
    seed: spec.seed,
  };
}

/** HPET ticks per write: the pacing's unit. */
export function hpetCostPerWrite(writesPerSecond: number): number {
  return writesPerSecond === 0 ? 0 : Math.max(1, Math.round(HPET_HZ / writesPerSecond));
}

/** The parameter block's 64 bytes for a resolved spec. */
export function parameterBlock(spec: ResolvedGuestSpec): Uint8Array {
  const block = new Uint8Array(64);
  const view = new DataView(block.buffer);
  const put = (offset: number, value: number) => view.setUint32(offset, value >>> 0, true);
  put(PARAM.magic, PARAM_MAGIC);
  put(PARAM.version, PARAM_VERSION);
  put(PARAM.pattern, GUEST_PATTERNS.indexOf(spec.pattern));
  put(PARAM.base, WORKING_SET_BASE);
  put(PARAM.pages, spec.workingSetPages);
  put(PARAM.hotPages, spec.hotPages);
  put(PARAM.hotThreshold, Math.min(0xffff_ffff, Math.round(spec.hotFraction * 2 ** 32)));
  // xorshift32 never leaves 0: a zero seed takes a fixed odd constant.
  put(PARAM.seed, spec.seed === 0 ? 0x9e37_79b9 : spec.seed);
  const cost = hpetCostPerWrite(spec.writesPerSecond);
  put(PARAM.cost, cost);
  // Writes owed for at most 1 s: a vCPU the host left off its CPU for a
  // while catches up (the rate holds on a busy host), but a guest held for
  // longer does not come back with an unbounded burst.
  put(PARAM.creditCap, Math.max(cost, HPET_HZ));
  return block;
}

/** Unpaced, the guest writes this many pages between two reads of the clock. */
const UNPACED_BATCH = 64;

/** The guest's machine code, to be loaded at {@link CODE_START}. */
export function guestCode(): Uint8Array {
  const p = (field: keyof typeof PARAM) => PARAM_BLOCK + PARAM[field];
  const a = new X86Assembler(CODE_START);
  // Registers: esi xorshift32 state, ebp last HPET count, ebx credit
  // (HPET ticks), edi sequential page; eax, ecx, edx scratch.
  a.cli().movImm(Reg.esp, STACK_TOP);
  a.storeImm(STATE_ADDRESS, GuestState.filling);
  // Fill: one non-zero word per page, so every page is "normal" to QEMU.
  a.load(Reg.edi, p("base")).load(Reg.ecx, p("pages"));
  a.label("fill").storeAt(Reg.edi, Reg.edi).addImm(Reg.edi, GUEST_PAGE);
  a.addMemImm8(FILLED_ADDRESS, 1).dec(Reg.ecx).jcc(Cond.ne, "fill");
  a.storeImm(STATE_ADDRESS, GuestState.writing);
  a.load(Reg.esi, p("seed")).xor(Reg.edi, Reg.edi).xor(Reg.ebx, Reg.ebx);
  // The HPET's main counter is the clock: QEMU computes it from the virtual
  // clock on every read, so no tick is lost however long the vCPU is off
  // the host CPU (the PIT's 16-bit counter wraps every 55 ms and would).
  a.load(Reg.eax, HPET_BASE + 0x4)
    .cmpImm(Reg.eax, HPET_PERIOD_FS)
    .jcc(Cond.e, "hpet_ok");
  a.storeImm(STATE_ADDRESS, GuestState.noClock);
  a.label("halt").cli().hlt().jmp("halt");
  a.label("hpet_ok").storeImm(HPET_BASE + 0x10, 1);
  a.load(Reg.ebp, HPET_BASE + 0xf0);

  a.label("loop").load(Reg.ecx, HPET_BASE + 0xf0);
  // Ticks since the last read (32-bit wrap-around: 42 s at 100 MHz).
  a.mov(Reg.eax, Reg.ecx).sub(Reg.eax, Reg.ebp).mov(Reg.ebp, Reg.ecx);
  a.addToMem(CLOCK_TICKS_ADDRESS, Reg.eax).adcMemImm8(CLOCK_TICKS_ADDRESS + 4, 0);
  a.load(Reg.edx, p("cost")).test(Reg.edx, Reg.edx).jcc(Cond.e, "unpaced");
  // Credit owed, capped: compare the ticks first so the sum cannot wrap.
  a.cmpMem(Reg.eax, p("creditCap")).jcc(Cond.be, "small");
  a.load(Reg.eax, p("creditCap"));
  a.label("small").add(Reg.ebx, Reg.eax);
  a.cmpMem(Reg.ebx, p("creditCap")).jcc(Cond.be, "paced");
  a.load(Reg.ebx, p("creditCap"));
  a.label("paced").cmpMem(Reg.ebx, p("cost")).jcc(Cond.b, "loop");
  a.subMem(Reg.ebx, p("cost")).call("write_one").jmp("paced");
  a.label("unpaced").movImm(Reg.ecx, UNPACED_BATCH);
  a.label("batch").call("write_one").dec(Reg.ecx).jcc(Cond.ne, "batch").jmp("loop");

  // write_one: picks a page, writes the counter's low word into it, counts.
  // Keeps ecx (the unpaced batch counter).
  a.label("write_one").store(SAVE_SLOT, Reg.ecx);
  a.cmpMemImm8(p("pattern"), 2).jcc(Cond.e, "sequential");
  a.call("xorshift").load(Reg.ecx, p("pages"));
  a.cmpMemImm8(p("pattern"), 1).jcc(Cond.ne, "pick");
  a.cmpMem(Reg.esi, p("hotThreshold")).jcc(Cond.ae, "cold");
  a.load(Reg.ecx, p("hotPages"));
  a.label("cold").call("xorshift");
  // page = high half of state * pages: uniform over [0, pages) without a divide.
  a.label("pick").mov(Reg.eax, Reg.esi).mul(Reg.ecx).jmp("write");
  a.label("sequential").inc(Reg.edi).cmpMem(Reg.edi, p("pages")).jcc(Cond.b, "seq_ok");
  a.xor(Reg.edi, Reg.edi);
  a.label("seq_ok").mov(Reg.edx, Reg.edi);
  // edx = page index: address = base + page * 4096, word (count mod 1024).
  a.label("write").shl(Reg.edx, 12).addMem(Reg.edx, p("base"));
  a.load(Reg.eax, WRITE_COUNTER_ADDRESS).mov(Reg.ecx, Reg.eax).andImm(Reg.ecx, 0x3ff);
  a.inc(Reg.eax).storeIndexed4(Reg.edx, Reg.ecx, Reg.eax);
  a.addMemImm8(WRITE_COUNTER_ADDRESS, 1).adcMemImm8(WRITE_COUNTER_ADDRESS + 4, 0);
  a.load(Reg.ecx, SAVE_SLOT).ret();

  // xorshift32 (Marsaglia 2003, shifts 13, 17, 5) on esi.
  a.label("xorshift");
  a.mov(Reg.eax, Reg.esi).shl(Reg.eax, 13).xor(Reg.esi, Reg.eax);
  a.mov(Reg.eax, Reg.esi).shr(Reg.eax, 17).xor(Reg.esi, Reg.eax);
  a.mov(Reg.eax, Reg.esi).shl(Reg.eax, 5).xor(Reg.esi, Reg.eax);
  return a.ret().assemble();
}

/** The multiboot header's magic (Multiboot Specification 0.6.96, 3.1.1). */
export const MULTIBOOT_MAGIC = 0x1bad_b002;
/** Flags: bit 1, ask for the memory fields; bit 16 clear, so the loader reads the ELF headers. */
const MULTIBOOT_FLAGS = 0x0000_0002;
/** The image's bytes on file (parameters and code); the status page and stack are bss. */
const FILE_BYTES = STATUS_PAGE - LOAD_ADDRESS;
const MEMORY_BYTES = STACK_TOP - LOAD_ADDRESS;

/**
 * The whole multiboot ELF32 image for a spec: what `hvlab qemu guest` writes
 * and QEMU's `-kernel` boots.
 */
export function guestImage(spec: GuestSpec): Uint8Array {
  const resolved = resolveGuestSpec(spec);
  const code = guestCode();
  if (CODE_START + code.length > STATUS_PAGE)
    throw new GuestSpecError(`the guest's code (${code.length} bytes) overruns the status page`);
  const image = new Uint8Array(FILE_BYTES);
  const view = new DataView(image.buffer);
  // ELF header (System V ABI, i386 supplement): 32-bit, little-endian, EXEC, i386.
  image.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  view.setUint16(16, 2, true); // e_type ET_EXEC
  view.setUint16(18, 3, true); // e_machine EM_386
  view.setUint32(20, 1, true); // e_version
  view.setUint32(24, CODE_START, true); // e_entry
  view.setUint32(28, 52, true); // e_phoff
  view.setUint32(32, 0, true); // e_shoff: no sections
  view.setUint16(40, 52, true); // e_ehsize
  view.setUint16(42, 32, true); // e_phentsize
  view.setUint16(44, 1, true); // e_phnum
  view.setUint16(46, 40, true); // e_shentsize
  // One PT_LOAD: the file from offset 0 at 1 MiB, RWX, the bss after it.
  view.setUint32(52, 1, true); // p_type PT_LOAD
  view.setUint32(56, 0, true); // p_offset
  view.setUint32(60, LOAD_ADDRESS, true); // p_vaddr
  view.setUint32(64, LOAD_ADDRESS, true); // p_paddr
  view.setUint32(68, FILE_BYTES, true); // p_filesz
  view.setUint32(72, MEMORY_BYTES, true); // p_memsz
  view.setUint32(76, 7, true); // p_flags R|W|X
  view.setUint32(80, GUEST_PAGE, true); // p_align
  const mb = MULTIBOOT_HEADER - LOAD_ADDRESS;
  view.setUint32(mb, MULTIBOOT_MAGIC, true);
  view.setUint32(mb + 4, MULTIBOOT_FLAGS, true);
  view.setUint32(mb + 8, (-(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS) >>> 0) >>> 0, true);
  image.set(parameterBlock(resolved), PARAM_BLOCK - LOAD_ADDRESS);
  image.set(code, CODE_START - LOAD_ADDRESS);
  return image;
}
