import { FieldFormatError } from "../util/field-error.js";

/**
 * A VHD structure is not what the specification allows (the field and its
 * byte offset in the file).
 */
export class VhdFormatError extends FieldFormatError {
  override name = "VhdFormatError";
}

/** A request a disk cannot serve: unaligned, past the end, or to a read-only image. */
export class DiskRequestError extends RangeError {
  override name = "DiskRequestError";
}

/** A differencing disk's parent is missing, is not its parent, or the chain loops. */
export class ParentChainError extends Error {
  override name = "ParentChainError";
}

/**
 * An I/O request reached a disk after it was removed from the VM (or was
 * still queued when the removal point came): the guest sees it fail, as a
 * rescan after a hot remove makes I/O in flight fail.
 */
export class DiskRemovedError extends Error {
  override name = "DiskRemovedError";
}

/** A copy's destination is its own source, or a file the source reads through (a parent). */
export class DestinationIsSourceError extends Error {
  override name = "DestinationIsSourceError";
}

/** A pass-through disk is attached elsewhere (another VM or another process holds its lock). */
export class DiskBusyError extends Error {
  override name = "DiskBusyError";
}

/** A change to a VM's disks that Hyper-V refuses in the VM's current state. */
export class DiskAttachError extends Error {
  override name = "DiskAttachError";
}

/**
 * Direct I/O (O_DIRECT) is not to be had for a file: the platform has no
 * such flag, or the file system refuses it (tmpfs answers EINVAL). The
 * message names the file and the reason, in one line.
 */
export class DirectIoUnavailableError extends Error {
  override name = "DirectIoUnavailableError";
}
