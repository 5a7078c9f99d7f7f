/** A power model, load or policy parameter out of range: the message names the value. */
export class PowerConfigError extends RangeError {
  override name = "PowerConfigError";
}

/** A utilization trace that cannot be read: the message names the line and column. */
export class TraceError extends RangeError {
  override name = "TraceError";
}
