/**
 * Oracle for assembly/lackey.ts: the same scan, one line at a time, with a
 * regular expression and BigInt addresses. It stops where the kernel stops
 * (a line of another shape, a line the text ends inside, no room for the
 * next line's records) and writes the same record words.
 */

/** What {@link scanLackeyOracle} did (stop: 0 end, 1 another line, 2 full). */
export interface LackeyOracleScan {
  readonly stop: 0 | 1 | 2;
  readonly position: number;
  /** Record words: low (page bits 31:12 | kind), high (address bits 63:32), per record. */
  readonly words: number[];
  readonly lines: number;
}

const WRITE = 1;
const EXECUTE = 2;
const USER = 4;
const ACCESS_LINE = /^(I {2}| [LSM] )([0-9a-fA-F]{1,15}),([0-9]+)\r?$/;

/** Scans `text[from, to)` into at most `capacity` records, as the kernel does. */
export function scanLackeyOracle(
  text: Uint8Array,
  from: number,
  to: number,
  capacity: number,
  addressBits: number,
): LackeyOracleScan {
  const words: number[] = [];
  let lines = 0;
  let at = from;
  const stopAt = (stop: 0 | 1 | 2) => ({ stop, position: at, words, lines });
  while (at < to) {
    if (words.length / 2 + 2 > capacity) return stopAt(2);
    let lf = -1;
    for (let k = at; k < to; k++) {
      if (text[k] === 10) {
        lf = k;
        break;
      }
    }
    const line = Buffer.from(text.subarray(at, lf < 0 ? to : lf)).toString("latin1");
    if (lf < 0) {
      // Cut by the text's end: the kernel gives up on it wherever it sees
      // the end, unless the bytes so far already rule the usual shape out.
      return stopAt(couldStillBeAccess(line, addressBits) ? 0 : 1);
    }
    const m = ACCESS_LINE.exec(line);
    if (!m || /^0+$/.test(m[3] as string)) return stopAt(1);
    const address = BigInt(`0x${m[2]}`);
    if (address >= 1n << BigInt(addressBits)) return stopAt(1);
    const low = Number(address & 0xfffff000n);
    const high = Number(address >> 32n);
    const op = m[1] as string;
    if (op === " M ") words.push(low | USER, high, (low | WRITE | USER) >>> 0, high);
    else if (op === " S ") words.push((low | WRITE | USER) >>> 0, high);
    else if (op === " L ") words.push((low | USER) >>> 0, high);
    else words.push((low | EXECUTE | USER) >>> 0, high);
    lines++;
    at = lf + 1;
  }
  return stopAt(0);
}

/**
 * Whether the start of a line (no LF yet) is a prefix the kernel reads on
 * to the text's end: a prefix of `I  `/` X ` with hex digits, a comma and
 * digits, each part checked as far as it goes.
 */
function couldStillBeAccess(line: string, addressBits: number): boolean {
  if (line.length < 3) return false;
  if (!/^(I {2}| [LSM] )/.test(line)) return false;
  const m = /^.{3}([0-9a-fA-F]*)(.*)$/s.exec(line) as RegExpExecArray;
  const hex = m[1] as string;
  const rest = m[2] as string;
  if (rest === "") return true; // cut inside the address
  if (hex.length === 0 || hex.length > 15) return false;
  if (BigInt(`0x${hex}`) >= 1n << BigInt(addressBits)) return false;
  if (rest[0] !== ",") return false;
  // After the comma: digits, then at most a CR, up to the end.
  return /^,[0-9]*\r?$/.test(rest);
}
