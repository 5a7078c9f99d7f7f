/** Parsing and formatting of MAC, IPv4 and IPv6 addresses as bytes. */

/** Parses "02:00:5e:00:00:01" into 6 bytes. @throws RangeError when malformed. */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new RangeError(`'${text}' is not a MAC address (six hex bytes separated by ':')`);
  }
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

/** Formats 6 bytes as "02:00:5e:00:00:01". */
export function formatMac(bytes: Uint8Array, start = 0): string {
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push((bytes[start + i] ?? 0).toString(16).padStart(2, "0"));
  return out.join(":");
}

/** Parses dotted-quad IPv4 into 4 bytes. @throws RangeError when malformed. */
export function parseIpv4(text: string): Uint8Array {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new RangeError(`'${text}' is not an IPv4 address`);
  }
  return Uint8Array.from(parts.map(Number));
}

/** Parses an IPv6 address (with at most one '::') into 16 bytes. @throws RangeError. */
export function parseIpv6(text: string): Uint8Array {
  const fail = () => new RangeError(`'${text}' is not an IPv6 address`);
  const halves = text.split("::");
  if (halves.length > 2) throw fail();
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) throw fail();
  const all = [...head, ...new Array<string>(Math.max(0, missing)).fill("0"), ...tail];
  const bytes = new Uint8Array(16);
  for (const [i, group] of all.entries()) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) throw fail();
    const v = Number.parseInt(group, 16);
    bytes[i * 2] = v >>> 8;
    bytes[i * 2 + 1] = v & 0xff;
  }
  return bytes;
}

/** Parses an IPv4 or IPv6 address. */
export function parseIp(text: string): Uint8Array {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

/** Formats 4 or 16 address bytes (IPv6 without zero compression). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  }
  return groups.join(":");
}
