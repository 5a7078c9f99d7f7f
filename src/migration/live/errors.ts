/** The peer sent an error frame: it refused or abandoned the migration. */
export class PeerError extends Error {
  override name = "PeerError";
}

/** A live-migration setting that cannot work, said before anything runs. */
export class LiveConfigError extends RangeError {
  override name = "LiveConfigError";
}
