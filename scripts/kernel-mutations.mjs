// The curated semantic mutations of the kernels, run by
// scripts/mutate-kernels.mjs. One entry per kernel module of assembly/ (the
// top-level file's name): the tests that cover it, fastest and most pointed
// first (property tests, known answers, fuzz and fast unit tests; not the
// end-to-end ones that drive real tools, child processes or benchmarks,
// which run in the ordinary suite), and at least eight mutations, each a rule the module must keep
// broken on purpose. A module without an entry fails the run, so a new
// kernel module joins by adding its entry here.
//
// A test name with `*` stands for the files of test/ it matches (sorted):
// tests that land later join by their name; a name after `!` is left out.
//
// A mutation replaces `from`, which must occur exactly once in `file`
// (default assembly/<module>.ts), with `to`. A file under assembly/lib/
// rebuilds every module that imports it; a file under src/ rebuilds dist/.

/**
 * @typedef {{ id: string, rule: string, file?: string, from: string, to: string }} Mutation
 * @typedef {{ tests: string[], mutations: Mutation[] }} ModuleMutations
 */

/** @type {Record<string, ModuleMutations>} */
export const KERNEL_MUTATIONS = {
  bandwidth: {
    tests: ["test/bandwidth-bounds.test.ts", "test/kernel-isolation.test.ts"],
    mutations: [
      {
        id: "sweep-skips-last-byte",
        rule: "the read sweep reads every byte of the tail",
        from: "for (; at < end; at++) tail |= <u64>load<u8>(at);",
        to: "for (; at + 1 < end; at++) tail |= <u64>load<u8>(at);",
      },
      {
        id: "sweep-skips-fourth-vector",
        rule: "each 64-byte step reads all four 16-byte vectors",
        from: "d = v128.or(d, v128.load(at, 48));",
        to: "d = v128.or(d, v128.load(at, 32));",
      },
      {
        id: "sweep-drops-lane-1",
        rule: "the fold keeps both 64-bit lanes",
        from: "i64x2.extract_lane(all, 0) | i64x2.extract_lane(all, 1) | tail",
        to: "i64x2.extract_lane(all, 0) | tail",
      },
      {
        id: "sweep-drops-high-half",
        rule: "the fold to 32 bits keeps the high half of each word",
        from: "return <u32>(folded ^ (folded >>> 32));",
        to: "return <u32>folded;",
      },
      {
        id: "sweep-bytes-as-high-byte",
        rule: "a tail byte lands where the vector loads put it (little-endian)",
        from: "tail |= <u64>load<u8>(at);",
        to: "tail |= <u64>load<u8>(at) << 56;",
      },
      {
        id: "copy-one-short",
        rule: "a copy moves all `length` bytes",
        from: "memory.copy(dst, src, <usize>length);",
        to: "memory.copy(dst, src, <usize>length - 1);",
      },
      {
        id: "copy-backwards",
        rule: "a copy goes from source to target",
        from: "memory.copy(dst, src, <usize>length);",
        to: "memory.copy(src, dst, <usize>length);",
      },
      {
        id: "fill-one-short",
        rule: "a fill writes all `length` bytes",
        from: "memory.fill(dst, <u8>value, <usize>length);",
        to: "memory.fill(dst, <u8>value, <usize>length - 1);",
      },
      {
        id: "fill-drops-value-bit",
        rule: "a fill writes the byte value asked for",
        from: "memory.fill(dst, <u8>value, <usize>length);",
        to: "memory.fill(dst, <u8>(value & 0x7f), <usize>length);",
      },
    ],
  },

  checksum: {
    tests: ["test/net-checksum.test.ts", "test/net-segment.test.ts", "test/net-fuzz.test.ts"],
    mutations: [
      {
        id: "fold16-drops-carry",
        rule: "the fold from 32 to 16 bits adds the end-around carry",
        from: "return (s + rotr<u32>(s, 16)) >> 16;",
        to: "return ((s & 0xffff) + (s >> 16)) & 0xffff;",
      },
      {
        id: "fold32-drops-carry",
        rule: "the fold from 64 to 32 bits adds the end-around carry",
        from: "const s = <u32>((sum + rotr<u64>(sum, 32)) >> 32);",
        to: "const s = <u32>((sum & 0xffffffff) + (sum >> 32));",
      },
      {
        id: "no-byte-swap",
        rule: "the little-endian sum is byte-swapped to network order (RFC 1071 2(B))",
        from: "return ((x & 0xff) << 8) | ((x >> 8) & 0xff);",
        to: "return x & 0xffff;",
      },
      {
        id: "odd-byte-high",
        rule: "an odd last byte is the high byte of a zero-padded word in network order",
        from: "if (at < end) acc += <u64>load<u8>(at);\n  return acc;",
        to: "if (at < end) acc += <u64>load<u8>(at) << 8;\n  return acc;",
      },
      {
        id: "block-bias-halved",
        rule: "each 64-byte block adds back 2^20 for the flipped word signs",
        from: "return <u64>(signed + (blocks << 20)) + tailSum(at, end);",
        to: "return <u64>(signed + (blocks << 19)) + tailSum(at, end);",
      },
      {
        id: "copy-sum-skips-odd-byte",
        rule: "copy-and-sum sums the odd last byte it copies",
        from: "store<u8>(at + delta, byte);\n    total += <u64>byte;",
        to: "store<u8>(at + delta, byte);",
      },
      {
        id: "copy-sum-vector-bias",
        rule: "copy-and-sum adds back 2^18 per whole 16-byte vector",
        from: "let total = <u64>(signed + (<i64>(length >> 4) << 18));",
        to: "let total = <u64>(signed + (<i64>(length >> 5) << 18));",
      },
      {
        id: "copy-sum-skips-16-tail",
        rule: "copy-and-sum sums a 16-byte tail vector",
        from: "c = i32x4.add(c, i32x4.dot_i16x8_s(v128.xor(v, bias), ones));\n    at += 16;",
        to: "at += 16;",
      },
      {
        id: "seed-ignored",
        rule: "a seed (another partial sum) is added to the sum",
        from: "const sum = swap16(fold64(sumLittleEndian(ptr, <usize>length)));\n  return fold64(<u64>sum + <u64>(seed & 0xffff));",
        to: "const sum = swap16(fold64(sumLittleEndian(ptr, <usize>length)));\n  return fold64(<u64>sum);",
      },
      {
        id: "ipv4-field-not-cleared",
        rule: "the IPv4 header checksum is computed over a zeroed checksum field",
        from: "store<u16>(ptr, 0, 10);",
        to: "store<u16>(ptr, load<u16>(ptr, 10), 10);",
      },
      {
        id: "rfc1624-erratum",
        rule: "an unchanged field leaves the checksum unchanged (RFC 1624 erratum 4782)",
        from: "if ((m & 0xffff) == (m2 & 0xffff)) return checksum & 0xffff;",
        to: "if (false) return checksum & 0xffff;",
      },
      {
        id: "naive-odd-byte-low",
        rule: "the naive peer pads an odd last byte as the high byte",
        from: "if (at < end) acc += <u64>(<u32>load<u8>(at) << 8);",
        to: "if (at < end) acc += <u64>load<u8>(at);",
      },
    ],
  },

  dirty: {
    tests: [
      "test/dirty-page-list-rules.test.ts",
      "test/dirty-known-answers.test.ts",
      "test/dirty-kernel-vs-oracle.test.ts",
      "test/dirty-quiet-harvest.test.ts",
      "test/dirty-quiet-merge.test.ts",
      "test/dirty-ring.test.ts",
      "test/dirty-epoch-pair.test.ts",
      "test/pool-epoch-harvest.test.ts",
      "test/pool-concurrent-marking.test.ts",
      "test/kernel-isolation.test.ts",
    ],
    mutations: [
      {
        id: "mark-dirty-counts-new",
        rule: "marking a page already dirty counts as not newly dirty",
        from: "if (load<u64>(word) & bit) return 0;",
        to: "if (load<u64>(word) & bit) return 1;",
      },
      {
        id: "range-lead-short",
        rule: "a range's leading partial word runs to the word's end",
        from: "const take = min<u32>(64 - lead, left);",
        to: "const take = min<u32>(63 - lead, left);",
      },
      {
        id: "range-no-trailing-word",
        rule: "a range's trailing partial word is marked",
        from: "  // Trailing partial word.\n  if (left != 0) {",
        to: "  // Trailing partial word.\n  if (left > 64) {",
      },
      {
        id: "count-skips-odd-word",
        rule: "a count covers an odd last word",
        from: "if (i < words) a += popcnt<u64>(load<u64>(bitmap + ((<usize>i) << 3)));",
        to: "",
      },
      {
        id: "harvest-keeps-bits",
        rule: "a harvest clears what it reports (get-and-clear)",
        from: "value = atomic.xchg<u64>(bitmap + at, 0);",
        to: "value = atomic.load<u64>(bitmap + at);",
      },
      {
        id: "quiet-harvest-keeps-last-word",
        rule: "a quiet harvest clears an odd last word",
        from: "    store<u64>(snapshot + at, value);\n    store<u64>(bitmap + at, 0);\n    a += popcnt<u64>(value);",
        to: "    store<u64>(snapshot + at, value);\n    a += popcnt<u64>(value);",
      },
      {
        id: "merge-counts-old-bits",
        rule: "a merge counts only bits newly set in the target",
        from: "newly += popcnt<u64>(add & ~old);",
        to: "newly += popcnt<u64>(add);",
      },
      {
        id: "quiet-merge-drops-last-word",
        rule: "the one-pass harvest and merge ORs an odd last word into the distinct set",
        from: "const merged = load<u64>(distinct + at) | value;",
        to: "const merged = load<u64>(distinct + at);",
      },
      {
        id: "tail-mask-one-past",
        rule: "bits at or past the page count are never reported",
        from: "const used = bits - (last << 6);",
        to: "const used = bits - (last << 6) + 1;",
      },
      {
        id: "emit-three-bits",
        rule: "a word of exactly three dirty pages reports all three",
        from: "if (count > 2) {",
        to: "if (count > 3) {",
      },
      {
        id: "iterate-resume-skips",
        rule: "a full batch resumes at the first page it did not write",
        from: "store<u32>(cursor, (index << 6) + <u32>ctz<u64>(word));",
        to: "store<u32>(cursor, (index << 6) + <u32>ctz<u64>(word) + 1);",
      },
      {
        id: "harvest-pages-keeps-bits",
        rule: "harvest-and-iterate clears the words it reports",
        from: "const word = atomic.xchg<u64>(at, 0) & tailMask(index, bits);",
        to: "const word = atomic.load<u64>(at) & tailMask(index, bits);",
      },
      {
        id: "quiet-pages-no-clear",
        rule: "the quiet harvest-and-iterate clears its whole steps",
        from: "      clearStep(at);\n",
        to: "",
      },
      {
        id: "ring-overwrites-full",
        rule: "a full ring falls back to the bitmap instead of overwriting an entry",
        from: "if (head - tail >= size) {",
        to: "if (head - tail > size) {",
      },
      {
        id: "ring-flag-not-dirty",
        rule: "a pushed entry is flagged KVM_DIRTY_GFN_F_DIRTY",
        from: "atomic.store<u32>(entry, GFN_F_DIRTY);",
        to: "atomic.store<u32>(entry, GFN_F_RESET);",
      },
      {
        id: "drain-drops-last-page",
        rule: "a ring entry for the last page is drained into the bitmap",
        from: "if (page <= <u64>lastPage) markPage(bitmap, <u32>page);",
        to: "if (page < <u64>lastPage) markPage(bitmap, <u32>page);",
      },
      {
        id: "pair-wrong-bitmap",
        rule: "a writer marks the bitmap of its epoch (A for even, B for odd)",
        from: "const bitmap = epoch & 1 ? bitmapB : bitmapA;",
        to: "const bitmap = epoch & 1 ? bitmapA : bitmapB;",
      },
    ],
  },

  lackey: {
    tests: [
      "test/paging-lackey-rules.test.ts",
      "test/paging-lackey-kernel.test.ts",
      "test/paging-trace.test.ts",
      "test/paging-compare-pipeline.test.ts",
    ],
    mutations: [
      {
        id: "fetch-not-execute",
        rule: "an instruction fetch (I) is an execute access",
        from: "if (c1 == CH_SPACE && c2 == CH_SPACE) kind = ACCESS_EXECUTE | ACCESS_USER;",
        to: "if (c1 == CH_SPACE && c2 == CH_SPACE) kind = ACCESS_USER;",
      },
      {
        id: "store-not-write",
        rule: "a store (S) is a write access",
        from: "else if (c1 == CH_S) kind = ACCESS_WRITE | ACCESS_USER;",
        to: "else if (c1 == CH_S) kind = ACCESS_USER;",
      },
      {
        id: "modify-one-record",
        rule: "a modify (M) is a load then a store: two records",
        from: "count += 2;",
        to: "count += 1;",
      },
      {
        id: "modify-load-writes",
        rule: "a modify's first record is a load, not a write",
        from: "store<u32>(out, page | ACCESS_USER);",
        to: "store<u32>(out, page | ACCESS_WRITE | ACCESS_USER);",
      },
      {
        id: "upper-case-hex-refused",
        rule: "hex digits A-F read as a-f",
        from: "const l = (c | 0x20) - 97;",
        to: "const l = c - 97;",
      },
      {
        id: "address-limit-taken",
        rule: "an address at 2^addressBits is past the paging levels",
        from: "address >= limit",
        to: "address > limit",
      },
      {
        id: "size-zero-taken",
        rule: "an access of size 0 is not a lackey line",
        from: "if (j == digits || nonZero == 0 ||",
        to: "if (j == digits ||",
      },
      {
        id: "cr-not-skipped",
        rule: "a CR before the LF ends the line too",
        from: "if (j < to && <u32>load<u8>(text + j) == CH_CR) j++;",
        to: "",
      },
      {
        id: "high-half-dropped",
        rule: "a record keeps address bits 63:32",
        from: "const high = <u32>(address >> 32);",
        to: "const high: u32 = 0;",
      },
      {
        id: "page-keeps-offset",
        rule: "a record's address is the page's: bits 11:0 carry the kind",
        from: "const page = <u32>address & 0xfffff000;",
        to: "const page = <u32>address;",
      },
    ],
  },

  multifd: {
    tests: ["test/migration-multifd-header-rules.test.ts", "test/migration-multifd.test.ts"],
    mutations: [
      {
        id: "zero-page-sent-whole",
        rule: "with zero pages on, an all-zero page travels as its offset only",
        from: "if (options & OPT_ZERO && isZeroAt(src, pageBytes)) {",
        to: "if (options & OPT_ZERO && isZeroAt(src, pageBytes) && false) {",
      },
      {
        id: "next-size-counts-zero-pages",
        rule: "next_packet_size counts the normal pages' bytes only",
        from: "storeBe32(packet + H_NEXT_SIZE, normal << pageShift);",
        to: "storeBe32(packet + H_NEXT_SIZE, (normal + zero) << pageShift);",
      },
      {
        id: "send-bytes-no-zero-offsets",
        rule: "the bytes on the wire count every offset, zero pages' too",
        from: "const bytes = HEADER + ((normal + zero) << 3) + (normal << pageShift);",
        to: "const bytes = HEADER + (normal << 3) + (normal << pageShift);",
      },
      {
        id: "check-zero-count-loose",
        rule: "normal plus zero pages fit in pages_alloc",
        from: "if (zero > pagesAlloc - normal)",
        to: "if (zero > pagesAlloc)",
      },
      {
        id: "check-unaligned-offset",
        rule: "an offset that is not page-aligned is refused",
        from: "if ((offset & align) != 0 || page >= <u64>pages) {",
        to: "if (page >= <u64>pages) {",
      },
      {
        id: "check-page-one-past",
        rule: "an offset at the end of RAM is refused",
        from: "if ((offset & align) != 0 || page >= <u64>pages) {",
        to: "if ((offset & align) != 0 || page > <u64>pages) {",
      },
      {
        id: "check-ramblock-no-nul",
        rule: "the RAM block name must end with its NUL",
        from: "if ((load<u64>(packet + H_RAMBLOCK) & 0x00ff_ffff_ffff_ffff) != RAMBLOCK_NAME) {",
        to: "if ((load<u64>(packet + H_RAMBLOCK) & 0x0000_ffff_ffff_ffff) != RAMBLOCK_NAME) {",
      },
      {
        id: "check-flags-ignored",
        rule: "a packet with flags (compression) is refused",
        from: "if (loadBe32(packet + H_FLAGS) != 0) return fail(errorAt, <u32>H_FLAGS, E_FLAGS);",
        to: "",
      },
      {
        id: "check-short-offsets",
        rule: "a packet too short for its offsets is refused as truncated",
        from: "if (<u64>length < <u64>HEADER + (<u64>entries << 3)) return fail(errorAt, length, E_TRUNCATED);",
        to: "if (<u64>length < <u64>HEADER + (<u64>entries << 2)) return fail(errorAt, length, E_TRUNCATED);",
      },
      {
        id: "finish-keeps-stale-zero-page",
        rule: "a zero page's old content is cleared at the destination",
        from: "if (!isZeroAt(dst, pageBytes)) memory.fill(dst, 0, pageBytes);",
        to: "",
      },
      {
        id: "finish-hash-skips-zero-pages",
        rule: "every page a packet brought is hashed, zero pages too",
        from: "  if (hashOn == 0) return;\n  for (let i: u32 = 0; i < entries; i++) {",
        to: "  if (hashOn == 0) return;\n  for (let i: u32 = 0; i < normal; i++) {",
      },
    ],
  },

  page: {
    tests: [
      "test/migration-page-rules.test.ts",
      "test/migration-page-kernel.test.ts",
      "test/migration-page-stream-edges.test.ts",
      "test/migration-xxh3.test.ts",
      "test/migration-content.test.ts",
      "test/migration-multifd.test.ts",
    ],
    mutations: [
      {
        id: "uleb-no-continuation",
        rule: "a two-byte uleb128 sets the continuation bit",
        from: "store<u8>(dst, <u8>((value & 0x7f) | 0x80));",
        to: "store<u8>(dst, <u8>(value & 0x7f));",
      },
      {
        id: "equal-run-big-endian",
        rule: "the first differing byte is the lowest one of a little-endian word",
        from: "if (x != 0) return i + (<u32>ctz<u64>(x) >>> 3) - start;",
        to: "if (x != 0) return i + (<u32>clz<u64>(x) >>> 3) - start;",
      },
      {
        id: "different-run-haszero",
        rule: "a differing run ends at the first equal byte, not at a byte >= 0x81",
        from: "const zeroBytes = (x - ones) & ~x & (ones << 7);",
        to: "const zeroBytes = (x - ones) & (ones << 7);",
      },
      {
        id: "encode-sends-last-run",
        rule: "the last unchanged run is not sent",
        from: "    if (i == len) return <i32>d;\n",
        to: "",
      },
      {
        id: "encode-cap-one-past",
        rule: "an encoding that passes the cap by one byte overflows",
        from: "if (d + nzrun > cap) return -1;",
        to: "if (d + nzrun > cap + 1) return -1;",
      },
      {
        id: "decode-zero-run-accepted",
        rule: "a zero-length unchanged run after the first is malformed",
        from: "if (i != 0 && count == 0) return -1;",
        to: "",
      },
      {
        id: "decode-page-one-past",
        rule: "a record for the page at the end of RAM is refused",
        from: "page64 >= <u64>pages) return E_BAD_PAGE;",
        to: "page64 > <u64>pages) return E_BAD_PAGE;",
      },
      {
        id: "zero-record-fill-one",
        rule: "a zero page's record carries fill byte 0",
        from: "store<u8>(out + <usize>d, 0, 8);",
        to: "store<u8>(out + <usize>d, 1, 8);",
      },
      {
        id: "cache-tag-off-by-one",
        rule: "the XBZRLE cache tags a slot with page + 1",
        from: "store<u32>(tag, page + 1);",
        to: "store<u32>(tag, page);",
      },
      {
        id: "encode-packet-cap-strict",
        rule: "a PAGE record that exactly fills the packet is taken",
        from: "if (d + HEADER_BYTES + pageBytes > cap) break;",
        to: "if (d + HEADER_BYTES + pageBytes >= cap) break;",
      },
      {
        id: "hash-pages-off-by-one",
        rule: "hashPages hashes page first + i into slot i",
        from: "const page = ram + ((<usize>(first + i)) << pageShift);",
        to: "const page = ram + ((<usize>(first + i + 1)) << pageShift);",
      },
      {
        id: "zero-test-skips-tail-byte",
        rule: "the zero-page test reads every byte of a short tail",
        file: "assembly/lib/zero.ts",
        from: "for (; i < len; i++) if (load<u8>(ptr + i) != 0) return false;",
        to: "for (; i + 1 < len; i++) if (load<u8>(ptr + i) != 0) return false;",
      },
      {
        id: "zero-test-skips-fourth-vector",
        rule: "the zero-page test reads all four vectors of a step",
        file: "assembly/lib/zero.ts",
        from: "const b = v128.or(v128.load(ptr + i, 32), v128.load(ptr + i, 48));",
        to: "const b = v128.or(v128.load(ptr + i, 32), v128.load(ptr + i, 32));",
      },
      {
        id: "xxh3-last-stripe-secret",
        rule: "the last stripe uses the secret 7 bytes before its end (XXH3_SECRET_LASTACC_START)",
        file: "assembly/lib/xxh3.ts",
        from: "@inline const SECRET_LASTACC_START: usize = 7;",
        to: "@inline const SECRET_LASTACC_START: usize = 8;",
      },
      {
        id: "xxh3-no-swap",
        rule: "each lane adds its neighbour's data (acc[i ^ 1] += data)",
        file: "assembly/lib/xxh3.ts",
        from: "i64x2.add(i64x2.extmul_low_i32x4_u(lo01, hi01), d0)",
        to: "i64x2.add(i64x2.extmul_low_i32x4_u(lo01, hi01), i64x2.shuffle(d0, d0, 1, 0))",
      },
      {
        id: "xxh3-products-unswapped",
        rule: "in swapped accumulator pairs each lane's product lands in its neighbour",
        file: "assembly/lib/xxh3.ts",
        from: "const lo23 = i32x4.shuffle(k2, k3, 2, 0, 6, 4);\n      const hi23 = i32x4.shuffle(k2, k3, 3, 1, 7, 5);",
        to: "const lo23 = i32x4.shuffle(k2, k3, 0, 2, 4, 6);\n      const hi23 = i32x4.shuffle(k2, k3, 1, 3, 5, 7);",
      },
      {
        id: "xxh3-scramble-secret-unswapped",
        rule: "the scramble's secret is swapped like the accumulator pairs",
        file: "assembly/lib/xxh3.ts",
        from: "const x1 = i64x2.shuffle(v128.load(ks, 16), v128.load(ks, 16), 1, 0);",
        to: "const x1 = v128.load(ks, 16);",
      },
    ],
  },

  power: {
    tests: [
      "test/power-kernel-rules.test.ts",
      "test/power-kernel-vs-oracle.test.ts",
      "test/power-known-answers.test.ts",
      "test/power-trace.test.ts",
      // The rest, but those that drive the command, a browser or a benchmark.
      "test/power-*.test.ts",
      "!test/power-cli.test.ts",
      "!test/power-report-browser.test.ts",
      "!test/power-bench.test.ts",
    ],
    mutations: [
      {
        id: "menu-residency-equal-refused",
        rule: "the menu governor takes a state whose target residency equals the predicted idle time",
        from: "if (residency > predicted) break;",
        to: "if (residency >= predicted) break;",
      },
      {
        id: "menu-ignores-history",
        rule: "the predicted idle time is the sooner of the next timer and the typical interval",
        from: "if (typical < predicted) predicted = typical;",
        to: "",
      },
      {
        id: "parked-not-deepest",
        rule: "a parked processor sleeps in the deepest C-state",
        from: "if (load<u32>(state + P_PARKED) != 0) return deepest;",
        to: "",
      },
      {
        id: "halt-goes-deep",
        rule: "the halt idle policy stays in C1 (state 0)",
        from: "if (mode == MODE_HALT) return 0;",
        to: "if (mode == MODE_HALT) return deepest;",
      },
      {
        id: "wake-latency-rounds-down",
        rule: "a wake-up's latency is its exit latency rounded up to the next microsecond",
        from: "record(hist, (<u64>load<u32>(entry + CS_EXIT_NS) + 999) / 1000);",
        to: "record(hist, <u64>load<u32>(entry + CS_EXIT_NS) / 1000);",
      },
      {
        id: "wakeups-not-counted",
        rule: "every wake from a C-state is counted",
        from: "store<u64>(counter + K_WAKEUPS, load<u64>(counter + K_WAKEUPS) + 1);",
        to: "",
      },
      {
        id: "waking-counted-as-busy",
        rule: "ticks spent leaving a C-state count as waking, not busy",
        from: "addCount(counter + K_WAKING, waking);",
        to: "addCount(counter + K_BUSY, waking);",
      },
      {
        id: "busy-rounds-down",
        rule: "a backlog takes ceil(work / speed) ticks",
        from: "const need = (<u64>backlog + speed - 1) / speed;",
        to: "const need = <u64>backlog / speed;",
      },
      {
        id: "residency-in-first-state",
        rule: "idle ticks count toward the residency of the C-state the processor is in",
        from: "addCount(counter + K_CSTATE + (<usize>load<u32>(state + P_CSTATE) << 3), dt);",
        to: "addCount(counter + K_CSTATE, dt);",
      },
      {
        id: "wake-takes-no-time",
        rule: "waking from a C-state takes its exit latency before work runs",
        from: "store<u32>(state + P_WAKE_LEFT, load<u32>(entry + CS_EXIT_TICKS));",
        to: "",
      },
      {
        id: "place-ignores-sleep-depth",
        rule: "among equally loaded processors, work goes to the shallowest sleeper",
        from: "key |= <u64>(exitTicks < 0xffff ? exitTicks : 0xffff);",
        to: "",
      },
      {
        id: "history-slot-stuck",
        rule: "each idle interval goes to the next of the eight history slots",
        from: "store<u32>(state + P_HISTORY_POS, (slot + 1) & (INTERVALS - 1));",
        to: "",
      },
    ],
  },

  receive: {
    tests: [
      "test/net-receive-rules.test.ts",
      "test/net-receive-kernel.test.ts",
      "test/net-receive-ipv4-header.test.ts",
      "test/net-udp-zero-checksum.test.ts",
      "test/net-vmq-rounds.test.ts",
      "test/net-vmq.test.ts",
      "test/net-replay.test.ts",
      "test/net-fuzz.test.ts",
    ],
    mutations: [
      {
        id: "ipv4-header-unchecked",
        rule: "a TCP/UDP frame's IPv4 header checksum is checked (RFC 791 section 3.1)",
        from: "if (onesSum(f + pL3, pL4 - pL3, 0) != 0xffff) return false;",
        to: "",
      },
      {
        id: "udp-zero-checked",
        rule: "an IPv4 UDP checksum of zero means none was computed (RFC 768)",
        from: "if (udp && load<u16>(f + pL4 + 6) == 0) return true;",
        to: "",
      },
      {
        id: "routing-header-ignored",
        rule: "with a routing header the pseudo-header carries the final destination (RFC 8200 section 8.1)",
        from: "if (type == 0 || type == 2) pDst = at + 8 + (addresses - 1) * 16;",
        to: "if (type == 0xff) pDst = at + 8 + (addresses - 1) * 16;",
      },
      {
        id: "fragment-offset-ignored",
        rule: "a frame with a fragment offset is a fragment, not a whole datagram",
        from: "fragment = (fragmentField & 0x3fff) != 0;",
        to: "fragment = (fragmentField & 0x2000) != 0;",
      },
      {
        id: "bad-delivered",
        rule: "a frame that fails validation is dropped unless asked for",
        from: "if (!deliverBad) continue;",
        to: "",
      },
      {
        id: "coalesce-ignores-sequence",
        rule: "a segment joins a group only at the group's next sequence number",
        from: "if (be32(f + l4 + 4) != be32(a + l4 + 4) + payloadBytes) return false;",
        to: "",
      },
      {
        id: "psh-keeps-group-open",
        rule: "a segment with PSH or FIN closes its group",
        from: "if ((flags & FIN_PSH) != 0 || payloadLength < load<u32>(open, 20)) store<u8>(open, 1, 30);",
        to: "if (payloadLength < load<u32>(open, 20)) store<u8>(open, 1, 30);",
      },
      {
        id: "group-flags-from-first",
        rule: "a super-frame carries the last segment's PSH and FIN",
        from: "| (lastFlags & FIN_PSH)",
        to: "",
      },
      {
        id: "ring-overwrites-full",
        rule: "a full ring drops the frame instead of overwriting a slot",
        from: "if (head - atomic.load<u32>(ring + RING_TAIL) >= slots) return 0;",
        to: "if (head - atomic.load<u32>(ring + RING_TAIL) > slots) return 0;",
      },
      {
        id: "group-address-unicast",
        rule: "a frame to a group MAC (I/G bit set) goes to every VM's ring",
        from: "if ((load<u8>(f) & 1) != 0) {",
        to: "if ((load<u8>(f) & 2) != 0) {",
      },
      {
        id: "vlan-ignored-in-lookup",
        rule: "the switch matches MAC and VLAN",
        from: "load<i32>(e, 8) == vlan",
        to: "true",
      },
      {
        id: "copy-skips-last-byte",
        rule: "a delivered frame is copied to its last byte",
        from: "for (; at < end; at++) store<u8>(at + delta, load<u8>(at));",
        to: "for (; at + 1 < end; at++) store<u8>(at + delta, load<u8>(at));",
      },
    ],
  },

  rss: {
    tests: ["test/net-rss.test.ts", "test/net-rss-*.test.ts", "test/net-vmq.test.ts"],
    mutations: [
      {
        id: "window-32-bits",
        rule: "each input byte sees a 40-bit window of the key",
        from: "for (let j: u32 = 0; j < 5; j++) {",
        to: "for (let j: u32 = 0; j < 4; j++) {",
      },
      {
        id: "window-shift-off-by-one",
        rule: "input bit b takes key bits [8i + b, 8i + b + 32)",
        from: "hash ^= <u32>(window >> (8 - b));",
        to: "hash ^= <u32>(window >> (7 - b));",
      },
      {
        id: "bits-lsb-first",
        rule: "input bits are taken from the left (most significant first)",
        from: "if ((v & (0x80 >> b)) != 0)",
        to: "if ((v & (0x01 << b)) != 0)",
      },
      {
        id: "table-35-positions",
        rule: "the tables cover 36 input bytes (IPv6 addresses and ports)",
        from: "@inline const MAX_INPUT: u32 = 36;",
        to: "@inline const MAX_INPUT: u32 = 35;",
      },
      {
        id: "hash-skips-last-byte",
        rule: "a hash takes every input byte",
        from: "  for (let i: u32 = 0; i < length; i++) {\n    h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(input + i)) << 2));",
        to: "  for (let i: u32 = 0; i + 1 < length; i++) {\n    h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(input + i)) << 2));",
      },
      {
        id: "batch-ignores-stride",
        rule: "batch inputs are `stride` bytes apart",
        from: "for (let n: u32 = 0; n < count; n++, at += stride) {",
        to: "for (let n: u32 = 0; n < count; n++, at += length) {",
      },
      {
        id: "batch-skips-last-byte",
        rule: "a batch hash takes every input byte",
        from: "    for (let i: u32 = 0; i < length; i++) {\n      h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(at + i)) << 2));",
        to: "    for (let i: u32 = 0; i + 1 < length; i++) {\n      h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(at + i)) << 2));",
      },
      {
        id: "batch-xor-as-or",
        rule: "a batch returns the XOR of its hashes",
        from: "all ^= h;",
        to: "all |= h;",
      },
      {
        id: "indirection-mask-minus-2",
        rule: "RSS spreads flows over every processor (hash masked with the table size - 1)",
        file: "src/net/vmq.ts",
        from: "(RSS_INDIRECTION_ENTRIES - 1)",
        to: "(RSS_INDIRECTION_ENTRIES - 2)",
      },
    ],
  },

  segment: {
    tests: [
      "test/net-segment-udp-checksum.test.ts",
      "test/net-segment.test.ts",
      "test/net-segment-kernel-rules.test.ts",
      "test/net-udp-zero-checksum.test.ts",
      "test/net-frame.test.ts",
      "test/net-fuzz.test.ts",
      "test/net-vmq.test.ts",
    ],
    mutations: [
      {
        id: "psh-on-every-segment",
        rule: "FIN and PSH stay on the last segment only",
        from: "if (i + 1 < count) f &= ~(TCP_FIN | TCP_PSH);",
        to: "if (i + 1 < count) f &= ~TCP_FIN;",
      },
      {
        id: "cwr-on-second-segment",
        rule: "CWR stays on the first segment only",
        from: "if (i > 0 && (flags & FLAG_CWR_ALL) == 0) f &= ~TCP_CWR;",
        to: "if (i > 1 && (flags & FLAG_CWR_ALL) == 0) f &= ~TCP_CWR;",
      },
      {
        id: "wrap15-keeps-bit-15",
        rule: "LSOv2's IPv4 ID wraps at 15 bits",
        from: "else if (idMode == ID_WRAP15) id = (id0 + i) & 0x7fff;",
        to: "else if (idMode == ID_WRAP15) id = (id0 + i) & 0xffff;",
      },
      {
        id: "mf-kept",
        rule: "segments carry MF = 0 and fragment offset 0, DF kept",
        from: "storeBE16(frame + l3 + 6, fragment0 & IPV4_DF);",
        to: "storeBE16(frame + l3 + 6, fragment0);",
      },
      {
        id: "seq-not-advanced",
        rule: "each segment's sequence number advances by the payload sent",
        from: "const seq = seq0 + sent;",
        to: "const seq = seq0;",
      },
      {
        id: "last-partial-dropped",
        rule: "a shorter last segment carries the rest of the payload",
        from: "const count: u32 = payloadLength == 0 ? 1 : (payloadLength + mss - 1) / mss;",
        to: "const count: u32 = payloadLength == 0 ? 1 : payloadLength / mss;",
      },
      {
        id: "udp-zero-checksum-sent",
        rule: "a computed UDP checksum of zero is sent as all ones (RFC 768)",
        from: "if (udp && checksum == 0) checksum = 0xffff;",
        to: "",
      },
      {
        id: "ipv6-length-includes-header",
        rule: "the IPv6 payload length leaves out the fixed 40-byte header",
        from: "storeBE16(frame + l3 + 4, hdrLength - l3 - IPV6_HEADER + segmentLength);",
        to: "storeBE16(frame + l3 + 4, hdrLength - l3 + segmentLength);",
      },
      {
        id: "pseudo-length-missing",
        rule: "the pseudo-header sum includes the TCP/UDP length",
        from: "let sum: u32 = l4Base + l4Length;",
        to: "let sum: u32 = l4Base;",
      },
      {
        id: "table-length-mss",
        rule: "the table gives each segment's own length",
        from: "store<u32>(table + (<usize>i << 3), hdrLength + segmentLength, 4);",
        to: "store<u32>(table + (<usize>i << 3), hdrLength + mss, 4);",
      },
      {
        id: "ipv6-udp-zero-accepted",
        rule: "an IPv6 UDP checksum of zero is bad (RFC 8200 8.1)",
        from: "if (udp && !ipv6 && load<u16>(frame + l4 + 6) == 0) return good | GOOD_L4;",
        to: "if (udp && load<u16>(frame + l4 + 6) == 0) return good | GOOD_L4;",
      },
      {
        id: "ipv4-header-unchecked",
        rule: "a received IPv4 header is good only if it sums to 0xFFFF",
        from: "if (onesSum(frame + l3, l4 - l3, 0) == 0xffff) good |= GOOD_IP;",
        to: "good |= GOOD_IP;",
      },
    ],
  },

  storage: {
    tests: [
      "test/storage-bitmap-rules.test.ts",
      "test/storage-kernels.test.ts",
      "test/storage-fuzz.test.ts",
      "test/storage-io.test.ts",
    ],
    mutations: [
      {
        id: "set-head-lsb-first",
        rule: "sector s is bit 0x80 >> (s & 7) of byte s >> 3 (most significant bit first)",
        from: "  while (s < end && (s & 7) != 0) {\n    store<u8>(bm + (s >>> 3), load<u8>(bm + (s >>> 3)) | (<u8>0x80 >>> <u8>(s & 7)));",
        to: "  while (s < end && (s & 7) != 0) {\n    store<u8>(bm + (s >>> 3), load<u8>(bm + (s >>> 3)) | (<u8>1 << <u8>(s & 7)));",
      },
      {
        id: "set-skips-last-sector",
        rule: "setting a range sets its last partial byte's sectors, the last one too",
        from: "  while (s < end) {\n    store<u8>",
        to: "  while (s + 1 < end) {\n    store<u8>",
      },
      {
        id: "set-full-bytes-one-short",
        rule: "setting a range fills every whole byte of it",
        from: "memory.fill(bm + (s >>> 3), 0xff, fullBytes);",
        to: "memory.fill(bm + (s >>> 3), 0xff, fullBytes - 1);",
      },
      {
        id: "set-returns-count",
        rule: "bitmapSet returns how many sectors were clear before",
        from: "return count - was;",
        to: "return count;",
      },
      {
        id: "count-head-lsb-first",
        rule: "counting reads sector s from bit 7 - (s & 7) (most significant bit first)",
        from: "  while (s < end && (s & 7) != 0) {\n    n += (load<u8>(bm + (s >>> 3)) >>> <u8>(7 - (s & 7))) & 1;",
        to: "  while (s < end && (s & 7) != 0) {\n    n += (load<u8>(bm + (s >>> 3)) >>> <u8>(s & 7)) & 1;",
      },
      {
        id: "count-word-low-half",
        rule: "counting a whole 64-sector word counts all 64 bits",
        from: "n += <u32>popcnt<u64>(load<u64>(bm + (s >>> 3)));",
        to: "n += popcnt<u32>(load<u32>(bm + (s >>> 3)));",
      },
      {
        id: "count-skips-last-sector",
        rule: "counting takes the last partial byte's sectors, the last one too",
        from: "  while (s < end) {\n    n +=",
        to: "  while (s + 1 < end) {\n    n +=",
      },
      {
        id: "scan-lsb-first",
        rule: "a scan finds the byte's most significant matching bit first",
        from: "return s + (clz<u32>(bits) - 24);",
        to: "return s + ctz<u32>(bits);",
      },
      {
        id: "scan-skips-wrong-bytes",
        rule: "a scan for clear sectors skips only all-set bytes",
        from: "const skip: u8 = value != 0 ? 0x00 : 0xff;",
        to: "const skip: u8 = 0x00;",
      },
      {
        id: "checksum-field-3-bytes",
        rule: "the checksum counts all four bytes of its own field as zero",
        from: "if (i - skipAt < 4) continue;",
        to: "if (i - skipAt < 3) continue;",
      },
      {
        id: "checksum-not-complemented",
        rule: "the checksum is the one's complement of the byte sum",
        from: "return ~sum;",
        to: "return sum;",
      },
      {
        id: "checksum-skips-last-byte",
        rule: "the checksum sums every byte of the structure",
        from: "for (let i: usize = 0; i < len; i++) {",
        to: "for (let i: usize = 0; i + 1 < len; i++) {",
      },
      {
        id: "fill-skips-last-vector",
        rule: "the pattern fills the block's payload to its last byte",
        from: "for (let i = HEADER_BYTES; i < blockSize; i += 16) {\n      v128.store",
        to: "for (let i = HEADER_BYTES; i + 16 < blockSize; i += 16) {\n      v128.store",
      },
      {
        id: "verify-skips-last-vector",
        rule: "verification compares the payload to its last byte",
        from: "for (let i = HEADER_BYTES; i < blockSize; i += 16) {\n      diff",
        to: "for (let i = HEADER_BYTES; i + 16 < blockSize; i += 16) {\n      diff",
      },
      {
        id: "verify-trusts-unwritten",
        rule: "a block never written (generation 0) must read as zeros",
        from: "      if (!isZeroAt(p, blockSize)) return index;\n",
        to: "",
      },
    ],
  },

  stream: {
    tests: [
      "test/migration-live-stream-kernel.test.ts",
      "test/migration-live-frame.test.ts",
      "test/quick-migration-saved-state.test.ts",
    ],
    mutations: [
      {
        id: "xxh64-rotate-30",
        rule: "an XXH64 round rotates by 31",
        file: "assembly/lib/xxh64.ts",
        from: "return rotl<u64>(acc + input * P2, 31) * P1;",
        to: "return rotl<u64>(acc + input * P2, 30) * P1;",
      },
      {
        id: "xxh64-no-length",
        rule: "XXH64 adds the input length before the tails",
        file: "assembly/lib/xxh64.ts",
        from: "  h += <u64>length;\n",
        to: "",
      },
      {
        id: "xxh64-4-tail-strict",
        rule: "a 4-byte tail is taken when exactly 4 bytes remain",
        file: "assembly/lib/xxh64.ts",
        from: "if (p + 4 <= end) {",
        to: "if (p + 4 < end) {",
      },
      {
        id: "xxh64-skips-last-byte",
        rule: "XXH64 takes every byte of the 1-byte tail",
        file: "assembly/lib/xxh64.ts",
        from: "while (p < end) {",
        to: "while (p + 1 < end) {",
      },
      {
        id: "xxh64-avalanche-32",
        rule: "the avalanche starts with a shift by 33",
        file: "assembly/lib/xxh64.ts",
        from: "h ^= h >> 33;",
        to: "h ^= h >> 32;",
      },
      {
        id: "hash-pages-same-page",
        rule: "hashPages moves to the next page each time",
        from: "    store<u64>(out + ((<usize>i) << 3), xxh64At(at, pageBytes));\n    at += pageBytes;",
        to: "    store<u64>(out + ((<usize>i) << 3), xxh64At(at, pageBytes));",
      },
      {
        id: "hash-pages-ignores-first",
        rule: "hashPages starts at page `first`",
        from: "let at = ram + ((<usize>first) << <usize>pageShift);",
        to: "let at = ram;",
      },
      {
        id: "gather-one-short",
        rule: "a gathered page is copied whole",
        from: "memory.copy(to, ram + (page << <usize>pageShift), pageBytes);",
        to: "memory.copy(to, ram + (page << <usize>pageShift), pageBytes - 1);",
      },
      {
        id: "scatter-same-source",
        rule: "scatter takes the next page of the frame each time",
        from: "    from += pageBytes;\n",
        to: "",
      },
      {
        id: "scatter-one-short",
        rule: "a scattered page is copied whole",
        from: "memory.copy(ram + (page << <usize>pageShift), from, pageBytes);",
        to: "memory.copy(ram + (page << <usize>pageShift), from, pageBytes - 1);",
      },
    ],
  },

  walk: {
    tests: [
      "test/paging-walk-rules.test.ts",
      "test/paging-walk-oracle.test.ts",
      "test/paging-translate.test.ts",
      "test/paging-walk-counts.test.ts",
      "test/paging-caches.test.ts",
      // Every other paging test (the A/D and semantics tests among them),
      // but those that drive the command in a child process and the study
      // of published results (a sweep, end to end).
      "test/paging-*.test.ts",
      "!test/paging-cli.test.ts",
      "!test/paging-tour.test.ts",
      "!test/paging-studies.test.ts",
    ],
    mutations: [
      {
        id: "guest-d-never-set",
        rule: "a write sets D in the guest leaf entry",
        from: "const want = entry | A | (write ? D : 0);",
        to: "const want = entry | A;",
      },
      {
        id: "ept-d-never-set",
        rule: "with EPT A/D, a write sets D in the EPT leaf entry",
        from: "leaf = entry | EPT_A | (write ? EPT_D : 0);",
        to: "leaf = entry | EPT_A;",
      },
      {
        id: "guest-a-not-set-on-tables",
        rule: "a walk sets A in every non-leaf guest entry it uses",
        from: "      store<u64>(p, entry | A);\n",
        to: "",
      },
      {
        id: "write-to-read-only",
        rule: "a write through a read-only entry faults",
        from: "if (write && (perms & RW) == 0) return fault(ctx, FAULT_GUEST_PROTECTION, level, va);",
        to: "",
      },
      {
        id: "nx-not-inherited",
        rule: "NX in any entry of the walk makes the page non-executable",
        from: "perms = (perms & (entry | NX) & (RW | US | NX)) | (entry & NX);",
        to: "perms = perms & (entry | NX) & (RW | US | NX);",
      },
      {
        id: "ps-at-level-4",
        rule: "PS in a level-4 entry is reserved",
        from: "if (large && level > 3) return fault(ctx, FAULT_GUEST_RESERVED, level, va);",
        to: "if (large && level > 4) return fault(ctx, FAULT_GUEST_RESERVED, level, va);",
      },
      {
        id: "agile-never-nested",
        rule: "an agile walk continues nested below an entry marked AGILE_NESTED",
        from: "if (agile && !nested && (entry & AGILE_NESTED) != 0) nested = true;",
        to: "",
      },
      {
        id: "agile-pwc-forgets-nested",
        rule: "a page-walk cache hit in agile mode resumes the walk in the dimension it was cached in",
        from: "if (agile) nested = (v & PWC_NESTED) != 0;",
        to: "",
      },
      {
        id: "large-pat-as-address",
        rule: "bit 12 of a large leaf is PAT, not address",
        from: "const frame = gsize == 0 ? entry & ADDR : entry & ADDR & ~pageMask;",
        to: "const frame = entry & ADDR;",
      },
      {
        id: "ept-write-only-ok",
        rule: "a write-only EPT entry is a misconfiguration",
        from: "if ((entry & (EPT_R | EPT_W)) == EPT_W) {",
        to: "if (false) {",
      },
      {
        id: "tlb-write-to-read-only",
        rule: "a TLB entry without W does not serve a write",
        from: "if ((kind & K_WRITE) != 0 && (value & 1) == 0) return false;",
        to: "",
      },
      {
        id: "no-splintering",
        rule: "the TLB holds the smaller of the guest and host page sizes",
        from: "if (hsize < size) size = hsize;",
        to: "",
      },
      {
        id: "lru-evicts-way-0",
        rule: "a full set evicts its least recently used way",
        from: "if (s < oldest) {",
        to: "if (s > oldest) {",
      },
      {
        id: "host-refs-not-counted",
        rule: "every EPT entry read is counted",
        from: "    refs++;\n",
        to: "",
      },
      {
        id: "invlpg-keeps-pwc",
        rule: "INVLPG drops the address space's guest page-walk caches",
        from: "for (let id = T_PWC_G; id < T_PWC_H; id++) clearTagged(ctx, id, asid);",
        to: "",
      },
      {
        id: "host-pwc-wrong-level",
        rule: "a host page-walk cache hit at level l resumes the walk at level l - 1",
        from: "      table = load<u64>(e, 8);\n      level = l - 1;",
        to: "      table = load<u64>(e, 8);\n      level = l;",
      },
    ],
  },

  workload: {
    tests: [
      "test/workload-rules.test.ts",
      "test/workload-vs-oracle.test.ts",
      "test/dirty-profile.test.ts",
    ],
    mutations: [
      {
        id: "uniform-misses-last-page",
        rule: "uniform writes reach every page, the last one too",
        from: "newly += markPage(bitmap, <u32>below(mix(state) >>> 32, pages));",
        to: "newly += markPage(bitmap, <u32>below(mix(state) >>> 32, pages - 1));",
      },
      {
        id: "hot-set-at-zero",
        rule: "the hot set starts at its base page",
        from: "? hotBase + below(r >>> 32, hotPages)",
        to: "? below(r >>> 32, hotPages)",
      },
      {
        id: "sequential-skips",
        rule: "a sequential sweep advances by its stride",
        from: "cursor = (cursor + stride) % pages;",
        to: "cursor = (cursor + stride + 1) % pages;",
      },
      {
        id: "content-unaligned",
        rule: "content writes land on 8-byte-aligned offsets inside the page",
        from: "const offsetMask = ((<u32>1) << shift) - 8;",
        to: "const offsetMask = ((<u32>1) << shift) - 1;",
      },
      {
        id: "content-half-written",
        rule: "a content write stores all 8 bytes",
        from: "store<u64>(at, value);",
        to: "store<u32>(at, <u32>value);",
      },
      {
        id: "ring-ignored",
        rule: "ring mode logs writes in the vCPU's dirty ring",
        from: "if (flags & FLAG_RING) newly += ringPush(ring, ringSize, <u32>page, bitmap);\n    else newly += markPage(bitmap, <u32>page);",
        to: "newly += markPage(bitmap, <u32>page);",
      },
      {
        id: "zipf-rank-1-skipped",
        rule: "Zipf rank 1 maps to page 0 (ranks are 1-based)",
        from: "page = ((zipfRank(desc, <f64>pages) - 1) * scatter) % pages;",
        to: "page = (zipfRank(desc, <f64>pages) * scatter) % pages;",
      },
      {
        id: "writes-not-counted",
        rule: "the descriptor counts every write",
        from: "  store<u32>(desc + D_CURSOR, <u32>cursor);\n  store<u64>(desc + D_WRITES, load<u64>(desc + D_WRITES) + <u64>count);",
        to: "  store<u32>(desc + D_CURSOR, <u32>cursor);",
      },
      {
        id: "pair-wrong-bitmap",
        rule: "a pair writer marks the bitmap of its epoch",
        from: "epoch & 1 ? bitmapB : bitmapA, ram, 0, 0);",
        to: "epoch & 1 ? bitmapA : bitmapB, ram, 0, 0);",
      },
    ],
  },
};
