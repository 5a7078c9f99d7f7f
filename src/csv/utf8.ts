/**
 * Decodes UTF-8 exactly as it was sent: invalid bytes throw (`fatal`), and a
 * leading byte-order mark stays part of the text (`ignoreBOM`) rather than
 * being dropped, as the WHATWG decoder does by default. A name on the volume
 * or on the wire is its bytes: with the mark dropped, EF BB BF 61 and 61
 * would decode to one name, two files or two initiators taken for one.
 * Returns the text of `bytes`; throws a TypeError when they are not UTF-8.
 */
export function decodeExactUtf8(bytes: Uint8Array): string {
  // A decoder per call (names are short and few): one built at load is a
  // module constant, which mutation testing leaves out, and its two flags
  // are the whole rule.
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
}
