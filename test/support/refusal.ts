import { expect } from "vitest";

/** The error `run` throws; fails the test when it returns. */
export function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  return expect.fail("expected a refusal, got none");
}

/** The error `promise` rejects with; fails the test when it fulfils. */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  return await promise.then(
    () => expect.fail("expected a refusal, got a fulfilled promise"),
    (error: Error) => error,
  );
}
