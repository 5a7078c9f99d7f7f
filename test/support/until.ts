/**
 * Resolves once `condition` holds, looking every `stepMs`; fails naming
 * `what` when it has not within `ms`. For what a test waits on from
 * another process or connection, where no event says when.
 */
export async function until(
  condition: () => boolean,
  ms: number,
  what: string,
  stepMs = 10,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}
