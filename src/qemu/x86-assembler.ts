/*
 * A tiny assembler for the 32-bit x86 instructions the write guest needs.
 * Each method appends one instruction's bytes (Intel SDM vol. 2 encodings);
 * jumps and calls take a label and are patched once every label is placed,
 * always with 32-bit displacements so one pass suffices.
 */

/** The eight 32-bit general registers, numbered as ModR/M encodes them. */
export enum Reg {
  eax = 0,
  ecx = 1,
  edx = 2,
  ebx = 3,
  esp = 4,
  ebp = 5,
  esi = 6,
  edi = 7,
}

/** Conditions of `Jcc rel32` (second opcode byte 0x80 + cc). */
export enum Cond {
  b = 0x2,
  ae = 0x3,
  e = 0x4,
  ne = 0x5,
  be = 0x6,
}

/** An error in the program being assembled (a label used but never placed, twice placed). */
export class AssemblyError extends Error {
  override name = "AssemblyError";
}

/** ModR/M with mod=11: register to register. */
function rr(reg: number, rm: number): number {
  return 0xc0 | (reg << 3) | rm;
}

/** ModR/M with mod=00, r/m=101: a 32-bit absolute address follows. */
function abs(reg: number): number {
  return (reg << 3) | 0x05;
}

/** Emits 32-bit x86 machine code at a known load address. */
export class X86Assembler {
  private readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string }[] = [];

  /** `origin` is the address the first byte is loaded at. */
  constructor(readonly origin: number) {}

  /** The address of the next byte. */
  get here(): number {
    return this.origin + this.bytes.length;
  }

  private u8(...values: number[]): this {
    for (const v of values) this.bytes.push(v & 0xff);
    return this;
  }

  private u32(value: number): this {
    return this.u8(value, value >>> 8, value >>> 16, value >>> 24);
  }

  private rel32(label: string): this {
    this.fixups.push({ at: this.bytes.length, label });
    return this.u32(0);
  }

  /** Places `name` at the current address. */
  label(name: string): this {
    if (this.labels.has(name)) throw new AssemblyError(`label '${name}' placed twice`);
    this.labels.set(name, this.here);
    return this;
  }

  cli(): this {
    return this.u8(0xfa);
  }
  hlt(): this {
    return this.u8(0xf4);
  }
  ret(): this {
    return this.u8(0xc3);
  }
  /** `mov r32, imm32` (B8+r). */
  movImm(r: Reg, value: number): this {
    return this.u8(0xb8 + r).u32(value);
  }
  /** `mov r32, [addr]` (8B /r). */
  load(r: Reg, addr: number): this {
    return this.u8(0x8b, abs(r)).u32(addr);
  }
  /** `mov [addr], r32` (89 /r). */
  store(addr: number, r: Reg): this {
    return this.u8(0x89, abs(r)).u32(addr);
  }
  /** `mov dword [addr], imm32` (C7 /0). */
  storeImm(addr: number, value: number): this {
    return this.u8(0xc7, abs(0)).u32(addr).u32(value);
  }
  /** `mov [base], src` (89 /r, mod=00; base is neither esp nor ebp). */
  storeAt(base: Reg, src: Reg): this {
    if (base === Reg.esp || base === Reg.ebp)
      throw new AssemblyError("storeAt needs a SIB-free base");
    return this.u8(0x89, (src << 3) | base);
  }
  /** `mov [base + index*4], src` (89 /r with a SIB byte, scale 4). */
  storeIndexed4(base: Reg, index: Reg, src: Reg): this {
    if (base === Reg.ebp || index === Reg.esp)
      throw new AssemblyError("storeIndexed4: bad base or index");
    return this.u8(0x89, (src << 3) | 0x04, (2 << 6) | (index << 3) | base);
  }
  /** `mov dst, src` (89 /r). */
  mov(dst: Reg, src: Reg): this {
    return this.u8(0x89, rr(src, dst));
  }
  /** `add dst, src` (01 /r). */
  add(dst: Reg, src: Reg): this {
    return this.u8(0x01, rr(src, dst));
  }
  /** `sub dst, src` (29 /r). */
  sub(dst: Reg, src: Reg): this {
    return this.u8(0x29, rr(src, dst));
  }
  /** `xor dst, src` (31 /r). */
  xor(dst: Reg, src: Reg): this {
    return this.u8(0x31, rr(src, dst));
  }
  /** `test a, b` (85 /r). */
  test(a: Reg, b: Reg): this {
    return this.u8(0x85, rr(b, a));
  }
  /** `cmp r32, [addr]` (3B /r). */
  cmpMem(r: Reg, addr: number): this {
    return this.u8(0x3b, abs(r)).u32(addr);
  }
  /** `cmp dword [addr], imm8` (83 /7, imm8 sign-extended). */
  cmpMemImm8(addr: number, value: number): this {
    return this.u8(0x83, abs(7)).u32(addr).u8(value);
  }
  /** `add r32, [addr]` (03 /r). */
  addMem(r: Reg, addr: number): this {
    return this.u8(0x03, abs(r)).u32(addr);
  }
  /** `sub r32, [addr]` (2B /r). */
  subMem(r: Reg, addr: number): this {
    return this.u8(0x2b, abs(r)).u32(addr);
  }
  /** `add [addr], r32` (01 /r). */
  addToMem(addr: number, r: Reg): this {
    return this.u8(0x01, abs(r)).u32(addr);
  }
  /** `adc dword [addr], imm8` (83 /2): the carry into a 64-bit counter's high half. */
  adcMemImm8(addr: number, value: number): this {
    return this.u8(0x83, abs(2)).u32(addr).u8(value);
  }
  /** `cmp r32, imm32` (81 /7). */
  cmpImm(r: Reg, value: number): this {
    return this.u8(0x81, rr(7, r)).u32(value);
  }
  /** `add dword [addr], imm8` (83 /0). */
  addMemImm8(addr: number, value: number): this {
    return this.u8(0x83, abs(0)).u32(addr).u8(value);
  }
  /** `add r32, imm32` (81 /0). */
  addImm(r: Reg, value: number): this {
    return this.u8(0x81, rr(0, r)).u32(value);
  }
  /** `and r32, imm32` (81 /4). */
  andImm(r: Reg, value: number): this {
    return this.u8(0x81, rr(4, r)).u32(value);
  }
  /** `shl r32, imm8` (C1 /4). */
  shl(r: Reg, count: number): this {
    return this.u8(0xc1, rr(4, r), count);
  }
  /** `shr r32, imm8` (C1 /5). */
  shr(r: Reg, count: number): this {
    return this.u8(0xc1, rr(5, r), count);
  }
  /** `mul r32` (F7 /4): edx:eax = eax * r. */
  mul(r: Reg): this {
    return this.u8(0xf7, rr(4, r));
  }
  /** `inc r32` (40+r, 32-bit mode only). */
  inc(r: Reg): this {
    return this.u8(0x40 + r);
  }
  /** `dec r32` (48+r, 32-bit mode only). */
  dec(r: Reg): this {
    return this.u8(0x48 + r);
  }
  /** `movzx r32, r16` of the same register (0F B7 /r). */
  movzx16(r: Reg): this {
    return this.u8(0x0f, 0xb7, rr(r, r));
  }
  /** `mov al, imm8` (B0). */
  movAlImm(value: number): this {
    return this.u8(0xb0, value);
  }
  /** `mov cl, al` (88 C1) and `mov ch, al` (88 C5): build cx from two port reads. */
  movClAl(): this {
    return this.u8(0x88, 0xc1);
  }
  movChAl(): this {
    return this.u8(0x88, 0xc5);
  }
  /** `out imm8, al` (E6). */
  outAl(port: number): this {
    return this.u8(0xe6, port);
  }
  /** `in al, imm8` (E4). */
  inAl(port: number): this {
    return this.u8(0xe4, port);
  }
  /** `jmp rel32` (E9). */
  jmp(label: string): this {
    return this.u8(0xe9).rel32(label);
  }
  /** `jcc rel32` (0F 80+cc). */
  jcc(cond: Cond, label: string): this {
    return this.u8(0x0f, 0x80 + cond).rel32(label);
  }
  /** `call rel32` (E8). */
  call(label: string): this {
    return this.u8(0xe8).rel32(label);
  }

  /** The machine code with every jump resolved. */
  assemble(): Uint8Array {
    const out = Uint8Array.from(this.bytes);
    const view = new DataView(out.buffer);
    for (const { at, label } of this.fixups) {
      const target = this.labels.get(label);
      if (target === undefined)
        throw new AssemblyError(`label '${label}' is used but never placed`);
      view.setInt32(at, target - (this.origin + at + 4), true);
    }
    return out;
  }
}
