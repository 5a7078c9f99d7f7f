import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromWire, toWire } from "../src/distributed/codec.js";
import { parseQueueUrl, QueueUrlError, redactQueueUrl } from "../src/distributed/connection.js";
import { PAYLOAD_VERSION, PayloadError, parsePayload } from "../src/distributed/payload.js";
import { migrateSweepJobs, powerSweepJobs } from "../src/distributed/studies.js";
import { DEFAULT_LOAD } from "../src/power/load.js";
import { namedPolicy } from "../src/power/policies.js";
import { PROCESSOR_PRESETS } from "../src/power/processors.js";
import { DEFAULT_TIMING } from "../src/power/simulate.js";

const point = () => {
  const [job] = migrateSweepJobs(
    "s",
    { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" } },
    {
      bandwidths: [Number.POSITIVE_INFINITY],
      writeRates: [1000],
      downtimeLimitsMs: [300],
      policies: ["qemu"],
    },
  );
  if (!job) throw new Error("no job");
  return toWire(job) as Record<string, unknown>;
};

describe("queue URLs", () => {
  it("reads host, port, database, queue, credentials and TLS", () => {
    const t = parseQueueUrl("rediss://user:p%40ss@example.org:6380/3?queue=study-1");
    expect(t.redis).toMatchObject({
      host: "example.org",
      port: 6380,
      db: 3,
      username: "user",
      password: "p@ss",
    });
    expect(t.redis.tls).toEqual({ servername: "example.org" });
    expect(t.name).toBe("study-1");
    expect(t.shown).toBe("rediss://user:***@example.org:6380/3?queue=study-1");
    const plain = parseQueueUrl("redis://[::1]");
    expect(plain.redis).toMatchObject({ host: "::1", port: 6379, db: 0 });
    expect(plain.redis.tls).toBeUndefined();
    expect(plain.name).toBe("hvlab");
  });

  it.each([
    ["http://:hunter2@h", /scheme/],
    ["redis://:hunter2@h/16", /database 16/],
    ["redis://:hunter2@h/x", /database number/],
    ["redis://:hunter2@h?queue=a:b", /queue name/],
    ["redis://:hunter2@h?db=1", /unknown parameter 'db'/],
    ["hunter2", /not a URL/],
    ["redis://:hunter2@:6379", /no host|not a URL/],
  ])("refuses %s, without showing the password", (url, message) => {
    let error: unknown;
    try {
      parseQueueUrl(url);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(QueueUrlError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("hunter2");
  });

  it("never shows a password, whatever the URL (fuzzed)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("redis", "rediss", "http", "redis+x"),
        fc.string({ minLength: 1, maxLength: 12 }).filter((p) => /^[A-Za-z0-9]+$/.test(p)),
        fc.string({ maxLength: 30 }),
        (scheme, password, rest) => {
          const secret = `Z${password}Q9`;
          const url = `${scheme}://:${secret}@${rest}`;
          expect(redactQueueUrl(url)).not.toContain(secret);
          try {
            const t = parseQueueUrl(url);
            expect(t.shown).not.toContain(secret);
          } catch (error) {
            expect(error).toBeInstanceOf(QueueUrlError);
            expect((error as Error).message).not.toContain(secret);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("job payloads", () => {
  it("carries Infinity (an unlimited link) through JSON and back", () => {
    const wire = point();
    const text = JSON.stringify(wire);
    const back = parsePayload(JSON.parse(text), "job 1");
    expect(back.kind === "migrate-point" && back.options.maxBandwidth).toBe(
      Number.POSITIVE_INFINITY,
    );
  });

  it("refuses another version, naming both", () => {
    const older = PAYLOAD_VERSION - 1;
    const newer = PAYLOAD_VERSION + 1;
    for (const version of [0, older, newer, String(PAYLOAD_VERSION), null]) {
      expect(() => parsePayload({ ...point(), hvlab: version }, "job 7")).toThrow(
        new RegExp(
          `job 7: payload version ${JSON.stringify(version)} is not this worker's version ${PAYLOAD_VERSION}`,
        ),
      );
    }
  });

  it("refuses unknown fields and kinds: a job cannot name a file to write or a command to run", () => {
    const p = point();
    expect(() => parsePayload({ ...p, report: "/etc/passwd" }, "j")).toThrow(
      /Unrecognized key.*report/,
    );
    expect(() =>
      parsePayload({ ...p, options: { ...(p.options as object), out: "/tmp/x" } }, "j"),
    ).toThrow(/options: Unrecognized key/);
    expect(() => parsePayload({ ...p, kind: "exec", command: "sh" }, "j")).toThrow(/kind/);
    expect(() => parsePayload({ ...p, sweep: "../x" }, "j")).toThrow(/sweep/);
  });

  it("checks a power point's spec, trace samples included", () => {
    const base = {
      model: PROCESSOR_PRESETS.tiny ?? Object.values(PROCESSOR_PRESETS)[0],
      load: DEFAULT_LOAD,
      policy: namedPolicy("parking"),
      ...DEFAULT_TIMING,
    } as Parameters<typeof powerSweepJobs>[1];
    const jobs = powerSweepJobs(
      "p",
      base,
      { parameter: "CPMinCores", values: [0, 50] },
      { parameter: "CPHeadroom", values: [30] },
    );
    expect(jobs.map((j) => j.kind)).toEqual(["power-point", "power-point", "power-point"]);
    const wire = toWire(jobs[1]) as { spec: { model: Record<string, unknown> } };
    expect(() =>
      parsePayload(
        { ...wire, spec: { ...wire.spec, model: { ...wire.spec.model, sockets: 1e9 } } },
        "j",
      ),
    ).toThrow(/spec.model.sockets/);
  });

  it("any data at all is either an hvlab job or a PayloadError (fuzzed)", () => {
    const valid = point();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          // The envelope right and the rest anything, wrapped numbers and deep nesting included.
          fc.anything().map((rest) => ({ ...valid, options: rest })),
          fc.constant({ ...valid, options: { $number: "not a number" } }),
          fc.constant({ ...valid, options: JSON.parse(`${"[".repeat(40)}${"]".repeat(40)}`) }),
          fc.jsonValue(),
          // A valid payload with one field replaced by anything.
          fc
            .tuple(
              fc.constantFrom(...Object.keys(valid), "options.guestBytes", "options.workload"),
              fc.jsonValue(),
            )
            .map(([key, value]) => {
              const copy = structuredClone(valid) as Record<string, Record<string, unknown>>;
              const [head, tail] = key.split(".");
              if (tail && head && copy[head]) copy[head][tail] = value as never;
              else if (head) (copy as Record<string, unknown>)[head] = value;
              return copy;
            }),
        ),
        (data) => {
          try {
            const p = parsePayload(data, "fuzz");
            expect(p.hvlab).toBe(PAYLOAD_VERSION);
          } catch (error) {
            expect(error).toBeInstanceOf(PayloadError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("a key named __proto__ travels as data, not as the object's prototype", () => {
    const data = JSON.parse('{"__proto__": 1, "a": {"__proto__": {"b": 2}}}') as unknown;
    const back = fromWire(JSON.parse(JSON.stringify(toWire(data))));
    expect(JSON.stringify(back)).toBe('{"__proto__":1,"a":{"__proto__":{"b":2}}}');
    expect(Object.getPrototypeOf((back as { a: object }).a)).toBe(Object.prototype);
  });

  it("the codec restores every number, finite or not (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.array(fc.double()), (value, numbers) => {
        const data = { value, numbers };
        expect(fromWire(JSON.parse(JSON.stringify(toWire(data))))).toEqual(data);
      }),
    );
  });
});
