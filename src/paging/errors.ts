/** Something about paging was asked that cannot be done (a full zone, a bad address, a bad preset). */
export class PagingError extends Error {
  override name = "PagingError";
}

/** A trace file could not be read: says the file and line (or record) and what was wrong. */
export class TraceFormatError extends Error {
  override name = "TraceFormatError";
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
    readonly unit: "line" | "record" | "file" = "line",
  ) {
    super(
      unit === "file"
        ? `${file}: ${reason}`
        : `${file}:${unit === "line" ? "" : "record "}${line}: ${reason}`,
    );
  }
}
