import { join } from "node:path";
import { MemoryLayout } from "../../src/memory/layout.js";
import { fillDeviceState, prefillGuest } from "../../src/migration/live/guest-image.js";
import { region, type SavedStateHosts } from "../../src/migration/quick/saved-state-transport.js";
import { savedStateContext } from "./saved-state-context.js";

/**
 * The two hosts of a quick migration for `SavedStateTransport`: a source
 * guest of `ramBytes` (prefilled from `seed` unless `prefill` is false, a
 * 4 KiB page each) with `deviceBytes` of seeded device state, a destination
 * with its own memory, and the file in `dir`. No failover or resume wait,
 * no fsync, 4 MiB chunks, unless `overrides` say otherwise.
 */
export function savedStateHosts(
  dir: string,
  guest: { ramBytes: number; deviceBytes: number; seed: number; prefill?: boolean },
  overrides: Partial<SavedStateHosts> = {},
): SavedStateHosts {
  const sourceLayout = new MemoryLayout();
  const ram = sourceLayout.allocate("source-ram", guest.ramBytes, 4096);
  if (guest.prefill ?? true) prefillGuest(ram.bytes(sourceLayout.memory), 4096, guest.seed);
  const device = region(sourceLayout, "source-device", guest.deviceBytes);
  fillDeviceState(device.bytes(sourceLayout.memory), guest.seed);
  const destination = new MemoryLayout();
  return {
    file: join(dir, "guest.hvls"),
    sourceLayout,
    source: savedStateContext(sourceLayout, "source"),
    ram,
    device,
    destination,
    destinationContext: savedStateContext(destination, "destination"),
    chunkBytes: 4 * 1024 ** 2,
    sync: false,
    failoverMs: 0,
    resumeMs: 0,
    deviceBytes: guest.deviceBytes,
    ...overrides,
  };
}
