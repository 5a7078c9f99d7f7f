import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { PagingError } from "../src/paging/errors.js";
import { HOST_BASE, PhysicalWindow } from "../src/paging/physical.js";

const FRAME = 4096;

function window(hostFrames: number, guestFrames: number, layout = new MemoryLayout()) {
  const w = PhysicalWindow.allocate(layout, `tables ${layout.list().length}`, {
    hostTableBytes: hostFrames * FRAME,
    guestTableBytes: guestFrames * FRAME,
  });
  return { w, layout };
}

describe("the physical window's two zones", () => {
  it("puts host tables just below HOST_BASE and the guest's table zone at HOST_BASE", () => {
    const { w } = window(4, 2);
    expect(w.base).toBe(HOST_BASE - 4 * FRAME);
    expect(w.bytes).toBe(6 * FRAME);
    expect([w.allocateHostTable(), w.allocateHostTable()]).toEqual([w.base, w.base + FRAME]);
    expect([w.allocateGuestTable(), w.allocateGuestTable()]).toEqual([0, FRAME]);
    expect(w.usage).toEqual({ hostTables: 2, guestTables: 2 });
  });

  it("refuses a zone's frame past its last, naming the zone and its size", () => {
    const { w } = window(2, 1);
    w.allocateHostTable();
    w.allocateHostTable();
    expect(() => w.allocateHostTable()).toThrow(
      new PagingError(
        "host table memory is full (2 frames of 4 KiB): give the run more table memory",
      ),
    );
    w.allocateGuestTable();
    expect(() => w.allocateGuestTable()).toThrow(
      new PagingError(
        "the guest's page-table zone is full (1 frames of 4 KiB): give the run more table memory",
      ),
    );
  });

  it("hands a released frame out again, zeroed, before any new one", () => {
    const { w } = window(3, 2);
    const a = w.allocateHostTable();
    const b = w.allocateHostTable();
    w.write(b + 8, 0xdead_beefn);
    w.releaseHostTable(b);
    expect(w.usage.hostTables).toBe(1);
    expect(w.allocateHostTable()).toBe(b);
    expect(w.read(b + 8)).toBe(0n);
    expect(w.allocateHostTable()).toBe(a + 2 * FRAME);
    const g = w.allocateGuestTable();
    w.write(HOST_BASE + g + 4088, 1n << 63n);
    w.releaseGuestTable(g);
    expect(w.usage.guestTables).toBe(0);
    expect(w.allocateGuestTable()).toBe(g);
    expect(w.read(HOST_BASE + g + 4088)).toBe(0n);
    expect(w.usage).toEqual({ hostTables: 3, guestTables: 1 });
  });

  it("reads and writes 64-bit little-endian entries at host-physical addresses, through memory growth", () => {
    const { w, layout } = window(1, 1);
    const at = HOST_BASE + 16;
    w.write(at, 0x0123_4567_89ab_cdefn);
    const bytes = new Uint8Array(layout.memory.buffer, w.arena.offset + FRAME + 16, 8);
    expect([...bytes]).toEqual([0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
    layout.memory.grow(1);
    w.write(at + 8, 7n);
    expect([w.read(at), w.read(at + 8)]).toEqual([0x0123_4567_89ab_cdefn, 7n]);
  });

  it("has bytes from its base to its end, an entry's eight bytes whole", () => {
    const { w } = window(1, 1);
    const last = w.base + w.bytes - 8;
    expect([w.holds(w.base), w.holds(last)]).toEqual([true, true]);
    expect([w.holds(w.base - 1), w.holds(last + 1)]).toEqual([false, false]);
    expect(w.offsetOf(last)).toBe(w.bytes - 8);
    expect(w.offsetOf(w.base)).toBe(0);
    for (const hpa of [w.base - 8, last + 1, w.base + 0.5]) {
      expect(() => w.read(hpa), `0x${hpa.toString(16)}`).toThrow(
        new PagingError(`host-physical 0x${hpa.toString(16)} holds no table bytes`),
      );
    }
  });

  it("refuses zones that are not whole frames, and an arena too small for both", () => {
    const layout = new MemoryLayout();
    for (const [hostTableBytes, guestTableBytes] of [
      [FRAME + 1, FRAME],
      [FRAME, FRAME - 1],
    ] as const) {
      expect(() =>
        PhysicalWindow.allocate(layout, `odd ${hostTableBytes}`, {
          hostTableBytes,
          guestTableBytes,
        }),
      ).toThrow(new RangeError("table zones must be whole frames"));
    }
    const arena = layout.allocate("small", 2 * FRAME - 1);
    expect(
      () =>
        new PhysicalWindow(layout.memory, arena, { hostTableBytes: FRAME, guestTableBytes: FRAME }),
    ).toThrow(new RangeError("arena 'small' is smaller than its two zones"));
    const exact = layout.allocate("exact", 2 * FRAME);
    expect(
      new PhysicalWindow(layout.memory, exact, { hostTableBytes: FRAME, guestTableBytes: FRAME })
        .bytes,
    ).toBe(2 * FRAME);
  });
});
