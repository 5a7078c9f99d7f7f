import { describe, expect, it } from "vitest";
import {
  DestinationIsSourceError,
  DirectIoUnavailableError,
  DiskAttachError,
  DiskBusyError,
  DiskRemovedError,
  DiskRequestError,
  ParentChainError,
  VhdFormatError,
} from "../src/storage/errors.js";

// The command line prints an error as `name: message`, and scripts match the
// name: each storage error carries its own.

describe("storage errors", () => {
  it("print under their own names", () => {
    const errors = [
      new VhdFormatError("footer cookie", 512, "is wrong"),
      new DiskRequestError("m"),
      new ParentChainError("m"),
      new DiskRemovedError("m"),
      new DestinationIsSourceError("m"),
      new DiskBusyError("m"),
      new DiskAttachError("m"),
      new DirectIoUnavailableError("m"),
    ];
    expect(errors.map((e) => String(e).split(":")[0])).toEqual([
      "VhdFormatError",
      "DiskRequestError",
      "ParentChainError",
      "DiskRemovedError",
      "DestinationIsSourceError",
      "DiskBusyError",
      "DiskAttachError",
      "DirectIoUnavailableError",
    ]);
    expect(String(errors[0])).toBe("VhdFormatError: footer cookie at offset 512 (0x200): is wrong");
    expect(errors[1]).toBeInstanceOf(RangeError);
  });
});
