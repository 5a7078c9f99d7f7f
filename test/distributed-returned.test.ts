import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jobReturn, readJobReturn } from "../src/distributed/returned.js";

// A job's return value names the worker beside the result, so a completed
// event alone settles a point; anything else is refused as not a worker's.
describe("a job's return value", () => {
  it("comes back as it went, through JSON as Redis carries it (property)", () => {
    fc.assert(
      fc.property(fc.string(), fc.jsonValue(), (worker, value) => {
        const crossed = JSON.parse(JSON.stringify(jobReturn(worker, value))) as unknown;
        expect(readJobReturn(crossed, "job x")).toEqual({
          worker,
          value: JSON.parse(JSON.stringify(value)),
        });
      }),
    );
  });

  it("refuses a result no hvlab worker wrote, saying which job", () => {
    for (const bad of [
      null,
      "done",
      7,
      [],
      {},
      { value: 1 },
      { worker: 3, value: 1 },
      { worker: "w" },
    ]) {
      expect(() => readJobReturn(bad, "job s-p4")).toThrow(
        /^job s-p4: the job's result is not an hvlab worker's$/,
      );
    }
  });

  it("reads any JSON without crashing: a worker's result or a TypeError (fuzz)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          const read = readJobReturn(value, "job f");
          expect(typeof read.worker).toBe("string");
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
