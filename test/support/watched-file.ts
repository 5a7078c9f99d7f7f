/*
 * A file in memory that counts the fdatasyncs and closes it is asked for:
 * what the storage and csv tests check when a rule says a file is made
 * durable, or closed again after it was refused.
 */
import { MemoryFile } from "../../src/storage/block-file.js";

/** A {@link MemoryFile} that counts its `sync` and `close` calls. */
export class WatchedFile extends MemoryFile {
  syncs = 0;
  closes = 0;

  override sync(): void {
    this.syncs++;
  }

  override close(): void {
    this.closes++;
  }
}
