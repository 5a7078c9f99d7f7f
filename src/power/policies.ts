import { PowerConfigError } from "./errors.js";
import { DEFAULT_PARKING, type ParkingParameters } from "./parking.js";
import type { PowerPolicy } from "./simulate.js";

/**
 * The policies by name. "none" is the baseline standing for Windows Server
 * 2003 SP2: no parking, idle processors halt (C-state 0, the shallowest;
 * assumed, since the comparison needs one fixed idle behaviour).
 */
export const POLICY_NAMES = ["none", "parking", "menu", "menu-parking", "deepest"] as const;
/** A policy's name. */
export type PolicyName = (typeof POLICY_NAMES)[number];

/** A named policy with its parking parameters (for "parking" and "menu-parking") and P-state. */
export function namedPolicy(
  name: string,
  parking: ParkingParameters = DEFAULT_PARKING,
  pstate = 0,
): PowerPolicy {
  switch (name) {
    case "none":
      return { name, parking: null, idle: "halt", pstate };
    case "parking":
      return { name, parking, idle: "halt", pstate };
    case "menu":
      return { name, parking: null, idle: "menu", pstate };
    case "menu-parking":
      return { name, parking, idle: "menu", pstate };
    case "deepest":
      return { name, parking: null, idle: "deepest", pstate };
    default:
      throw new PowerConfigError(`unknown policy '${name}' (${POLICY_NAMES.join(", ")})`);
  }
}
