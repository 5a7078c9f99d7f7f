import { DiskAttachError } from "./errors.js";
import { PassThroughLock } from "./passthrough-lock.js";

/** IDE: 2 controllers x 2 locations, changed only with the VM off. */
export const IDE_CONTROLLERS = 2;
export const IDE_LOCATIONS = 2;
/** Synthetic SCSI: up to 4 controllers x 64 locations, disks hot-pluggable. */
export const MAX_SCSI_CONTROLLERS = 4;
export const SCSI_LOCATIONS = 64;

/** Guests for which Hyper-V 2.0 does not support hot add (Windows XP x86, Windows 2000). */
export const NO_HOT_ADD_GUESTS = ["windows-xp-x86", "windows-2000"] as const;

/** A disk attached to a VM: a VHD, or a pass-through disk held exclusively. */
export interface AttachedDisk {
  readonly kind: "vhd" | "passthrough";
  readonly path: string;
}

/** Where a disk sits. */
export interface DiskSlot {
  readonly bus: "ide" | "scsi";
  readonly controller: number;
  readonly location: number;
}

/** A slot as Hyper-V Manager names it: "SCSI 0:1", "IDE 1:0". */
export function slotName(s: DiskSlot): string {
  return `${s.bus.toUpperCase()} ${s.controller}:${s.location}`;
}

/**
 * A VM's storage topology and Hyper-V 2.0's rules for changing it: disks
 * come and go on synthetic SCSI locations while the VM runs; IDE disks and
 * the controllers themselves change only while it is off; a pass-through
 * disk belongs to one VM.
 */
export class VirtualMachine {
  private running = false;
  private scsi = 1;
  private readonly disks = new Map<string, { disk: AttachedDisk; lock?: PassThroughLock }>();

  constructor(
    readonly name: string,
    readonly guestOs = "windows-server-2008-r2",
  ) {}

  /** Whether the VM is running. */
  get isRunning(): boolean {
    return this.running;
  }

  /** SCSI controllers. */
  get scsiControllers(): number {
    return this.scsi;
  }

  start(): void {
    this.running = true;
  }

  stop(): void {
    this.running = false;
  }

  /** Adds a synthetic SCSI controller (VM off only, at most 4). */
  addScsiController(): void {
    if (this.running)
      throw new DiskAttachError(`VM '${this.name}': controllers change only while the VM is off`);
    if (this.scsi >= MAX_SCSI_CONTROLLERS) {
      throw new DiskAttachError(
        `VM '${this.name}': already has the most SCSI controllers, ${MAX_SCSI_CONTROLLERS}`,
      );
    }
    this.scsi++;
  }

  /** Removes the last SCSI controller (VM off only, and empty). */
  removeScsiController(): void {
    if (this.running)
      throw new DiskAttachError(`VM '${this.name}': controllers change only while the VM is off`);
    if (this.scsi === 0) throw new DiskAttachError(`VM '${this.name}': has no SCSI controller`);
    const last = this.scsi - 1;
    if ([...this.disks.keys()].some((k) => k.startsWith(`scsi:${last}:`))) {
      throw new DiskAttachError(`VM '${this.name}': SCSI controller ${last} still has disks`);
    }

    this.scsi--;
  }

  private check(slot: DiskSlot, change: "add" | "remove"): void {
    const [controllers, locations] =
      slot.bus === "ide" ? [IDE_CONTROLLERS, IDE_LOCATIONS] : [this.scsi, SCSI_LOCATIONS];
    if (
      !Number.isInteger(slot.controller) ||
      slot.controller < 0 ||
      slot.controller >= controllers
    ) {
      throw new DiskAttachError(
        `VM '${this.name}': ${slot.bus.toUpperCase()} controller ${slot.controller} does not exist (${controllers})`,
      );
    }
    if (!Number.isInteger(slot.location) || slot.location < 0 || slot.location >= locations) {
      throw new DiskAttachError(
        `VM '${this.name}': location ${slot.location} is not 0 to ${locations - 1}`,
      );
    }
    if (!this.running) return;
    if (slot.bus === "ide") {
      throw new DiskAttachError(
        `VM '${this.name}': ${slotName(slot)}: IDE disks cannot be changed while the VM runs`,
      );
    }
    if (change === "add" && (NO_HOT_ADD_GUESTS as readonly string[]).includes(this.guestOs)) {
      throw new DiskAttachError(
        `VM '${this.name}': guest ${this.guestOs} does not support hot add`,
      );
    }
  }

  /**
   * Attaches a disk.
   *
   * @throws DiskAttachError for a change the VM's state forbids or an occupied slot.
   * @throws DiskBusyError for a pass-through disk another VM or process holds.
   */
  attach(slot: DiskSlot, disk: AttachedDisk): void {
    this.check(slot, "add");
    const key = `${slot.bus}:${slot.controller}:${slot.location}`;
    if (this.disks.has(key))
      throw new DiskAttachError(`VM '${this.name}': ${slotName(slot)} is occupied`);
    const lock =
      disk.kind === "passthrough" ? PassThroughLock.acquire(disk.path, this.name) : undefined;
    this.disks.set(key, { disk, ...(lock ? { lock } : {}) });
  }

  /** Removes a disk, releasing a pass-through disk's lock. */
  detach(slot: DiskSlot): AttachedDisk {
    this.check(slot, "remove");
    const key = `${slot.bus}:${slot.controller}:${slot.location}`;
    const held = this.disks.get(key);
    if (!held) throw new DiskAttachError(`VM '${this.name}': ${slotName(slot)} is empty`);
    held.lock?.release();
    this.disks.delete(key);
    return held.disk;
  }

  /** The attached disks. */
  list(): { slot: DiskSlot; disk: AttachedDisk }[] {
    return [...this.disks.entries()].map(([key, { disk }]) => {
      const [bus, controller, location] = key.split(":");
      return {
        slot: {
          bus: bus as "ide" | "scsi",
          controller: Number(controller),
          location: Number(location),
        },
        disk,
      };
    });
  }
}
