import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  Guest,
  GuestConfigError,
  type GuestOptions,
  MAX_CONTENT_GUEST_BYTES,
  MAX_GUEST_BYTES,
} from "../src/guest/guest.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { KernelPool } from "../src/pool/pool.js";

const MiB = 1024 ** 2;

function options(over: Partial<GuestOptions> = {}): GuestOptions {
  return { bytes: MiB, content: false, vcpus: 1, seed: 7, workload: { kind: "uniform" }, ...over };
}

/** The error a guest built with these options throws (fails if none). */
function refusal(over: Partial<GuestOptions>): GuestConfigError {
  try {
    new Guest(new MemoryLayout(), options(over));
  } catch (error) {
    expect(error).toBeInstanceOf(GuestConfigError);
    return error as GuestConfigError;
  }
  throw new Error(`a guest with ${JSON.stringify(over)} was built`);
}

describe("guest options: each limit refused on its far side, kept on its near side", () => {
  it("names the error GuestConfigError, a RangeError", () => {
    const error = refusal({ bytes: MiB - 4096 });
    expect(error.name).toBe("GuestConfigError");
    expect(error).toBeInstanceOf(RangeError);
  });

  it("needs at least 1 MiB, a whole number of bytes", () => {
    expect(refusal({ bytes: MiB - 4096 }).message).toBe(
      `guest size must be at least 1 MiB, not ${MiB - 4096} bytes`,
    );
    expect(refusal({ bytes: MiB + 0.5 }).message).toMatch(/^guest size must be at least 1 MiB/);
    expect(refusal({ bytes: Number.NaN }).message).toMatch(/^guest size must be at least 1 MiB/);
    expect(new Guest(new MemoryLayout(), options({ bytes: MiB })).pages).toBe(256);
  });

  it("takes 16 TiB in metadata mode and refuses a page more", () => {
    expect(refusal({ bytes: MAX_GUEST_BYTES + 4096 }).message).toMatch(/over the 16 TiB limit/);
    const guest = new Guest(new MemoryLayout(), options({ bytes: MAX_GUEST_BYTES }));
    expect(guest.pages).toBe(2 ** 32);
    expect(guest.bytes).toBe(MAX_GUEST_BYTES);
  });

  it("holds at most 3 GiB in content mode", () => {
    expect(refusal({ bytes: MAX_CONTENT_GUEST_BYTES + 4096, content: true }).message).toBe(
      "a guest of 3.0 GiB cannot be held in content mode (at most 3.0 GiB under wasm32's 4 GiB): use metadata mode",
    );
    // The limit itself is allowed: checked without allocating 3 GiB, on a
    // guest just below the limit that is refused for another reason.
    expect(refusal({ bytes: MAX_CONTENT_GUEST_BYTES, content: true, vcpus: 0 }).message).toMatch(
      /^vCPUs must be/,
    );
  });

  it("runs 1 to 256 vCPUs", () => {
    for (const vcpus of [0, 257, 1.5]) {
      expect(refusal({ vcpus }).message).toBe(`vCPUs must be from 1 to 256, not ${vcpus}`);
    }
    expect(new Guest(new MemoryLayout(), options({ vcpus: 256 })).vcpuTargets).toHaveLength(256);
  });

  it("double-buffers only a bitmap", () => {
    expect(refusal({ doubleBuffered: true, tracking: "ring" }).message).toBe(
      "a double-buffered dirty log needs bitmap tracking, not rings",
    );
  });

  it("names its regions after the guest, 'guest' by default", () => {
    const layout = new MemoryLayout();
    new Guest(layout, options({ vcpus: 2, content: true }));
    expect(layout.list().map((r) => r.name)).toEqual([
      "guest-dirty-bitmap",
      "guest-ram",
      "guest-vcpu0-workload",
      "guest-vcpu1-workload",
    ]);
    const named = new MemoryLayout();
    new Guest(named, options({ name: "vm7", doubleBuffered: true, tracking: "bitmap" }));
    expect(named.list().map((r) => r.name)).toEqual([
      "vm7-dirty-bitmaps-epoch",
      "vm7-dirty-bitmaps-0",
      "vm7-dirty-bitmaps-1",
      "vm7-vcpu0-workload",
    ]);
  });

  it("gives each vCPU a ring only when tracking by rings", () => {
    const bitmap = new Guest(new MemoryLayout(), options({ vcpus: 2 }));
    expect(bitmap.vcpuTargets.every((t) => t.ring === undefined)).toBe(true);
    const rings = new Guest(new MemoryLayout(), options({ vcpus: 2, tracking: "ring" }));
    expect(rings.vcpuTargets.every((t) => t.ring !== undefined)).toBe(true);
  });
});

describe("guest writes: the count returned is the pages newly dirtied", () => {
  it("on this thread, summed over the vCPUs", async () => {
    const guest = new Guest(new MemoryLayout(), options({ vcpus: 3 }));
    // 200 uniform writes over 256 pages find about 139 of them clean.
    const newly = await guest.write(200);
    expect(newly).toBeGreaterThan(100);
    expect(newly).toBeLessThanOrEqual(200);
    const snapshot = DirtyBitmap.allocate(guest.layout, "snapshot", guest.pages);
    expect(guest.harvest(snapshot)).toBe(newly);
  });

  describe("on a pool", () => {
    const guest = new Guest(
      new MemoryLayout(),
      options({ bytes: 4 * MiB, vcpus: 2, content: true, doubleBuffered: true }),
    );
    let pool: KernelPool;
    beforeAll(() => {
      pool = new KernelPool(guest.layout, { threads: 2, domains: ["guest"] });
    });
    afterAll(async () => {
      await pool.close();
    });

    it("each vCPU is one task on the pool, with its RAM and its slot of the pair", async () => {
      const run = vi.spyOn(pool, "run");
      const newly = await guest.write(301, pool);
      expect(run).toHaveBeenCalledTimes(2);
      const tasks = run.mock.calls.map(([task]) => task);
      expect(tasks.map((t) => t.type)).toEqual(["workload.run", "workload.run"]);
      expect(tasks.map((t) => ("count" in t ? t.count : -1))).toEqual([151, 150]);
      for (const [slot, task] of tasks.entries()) {
        expect(task).toMatchObject({ ram: guest.ram?.toDescriptor(), pair: { slot } });
      }
      run.mockRestore();
      // 301 uniform writes over 1,024 pages find about 261 of them clean.
      expect(newly).toBeGreaterThan(200);
      expect(newly).toBeLessThanOrEqual(301);
      const snapshot = DirtyBitmap.allocate(guest.layout, "pool-snapshot", guest.pages);
      expect(guest.harvest(snapshot)).toBe(newly);
    });
  });
});
