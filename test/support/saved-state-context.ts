import type { MemoryLayout } from "../../src/memory/layout.js";
import type { SavedStateContext } from "../../src/migration/quick/saved-state.js";
import { StreamKernel } from "../../src/wasm/stream.js";

/**
 * What a saved-state reader or writer needs on one host: its memory, a
 * stream kernel with its 64-byte scratch, and a 64-byte header region.
 * `prefix` keeps the regions' names apart when one layout holds several.
 */
export function savedStateContext(layout: MemoryLayout, prefix = "host"): SavedStateContext {
  return {
    memory: layout.memory,
    kernel: StreamKernel.on(layout.memory, layout.allocate(`${prefix}-scratch`, 64)),
    scratch: layout.allocate(`${prefix}-header`, 64),
  };
}
