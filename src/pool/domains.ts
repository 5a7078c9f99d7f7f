import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../util/package-root.js";
import type { KernelContext } from "../wasm/context.js";

/*
 * Where a worker finds a domain's handlers: the `handlers` export of
 * dist/src/<domain>/tasks.js (workers run compiled JavaScript: Node 20 cannot
 * load TypeScript). A domain is named by its folder, so adding an engine is
 * adding a folder; the pool keeps no list of them.
 */

/** A domain's folder name: lower-case words joined by hyphens (nothing that walks the tree). */
const DOMAIN_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/** Most domains a pool may load (a guard against a runaway list, not a design limit). */
const MAX_DOMAINS = 64;

/** The compiled task module of a domain. */
export function domainTasksPath(domain: string): string {
  return join(packageRoot(), "dist", "src", domain, "tasks.js");
}

/**
 * Checks the domains a pool is told to load: names of folders under src/
 * whose tasks.js is built, each once.
 *
 * @throws TypeError for a list or a name of the wrong shape, Error naming the
 *   missing file when a domain's tasks are not built.
 */
export function checkDomains(domains: unknown): readonly string[] {
  if (!Array.isArray(domains) || domains.length === 0 || domains.length > MAX_DOMAINS) {
    throw new TypeError(
      `pool domains must be a list of 1 to ${MAX_DOMAINS} domain names, not ${JSON.stringify(domains)}`,
    );
  }
  const seen = new Set<string>();
  for (const domain of domains) {
    if (typeof domain !== "string" || !DOMAIN_NAME.test(domain)) {
      throw new TypeError(`pool domain ${JSON.stringify(domain)} is not a domain folder name`);
    }
    if (seen.has(domain)) throw new TypeError(`pool domain '${domain}' is named twice`);
    seen.add(domain);
    if (!existsSync(domainTasksPath(domain))) {
      throw new Error(
        `pool domain '${domain}' has no built tasks (${join("dist", "src", domain, "tasks.js")}): run npm run build`,
      );
    }
  }
  return [...seen];
}

type AnyHandler = (context: KernelContext, task: unknown) => unknown;

/** The task handlers a worker loaded, by task type, and the domain of each. */
export class HandlerTable {
  private readonly handlers = new Map<string, { domain: string; run: AnyHandler }>();

  private constructor(readonly domains: readonly string[]) {}

  /**
   * Imports each domain's tasks.js and gathers its `handlers`.
   *
   * @throws TypeError when a domain exports no handler table, or two domains
   *   register the same task type.
   */
  static async load(domains: readonly string[]): Promise<HandlerTable> {
    const table = new HandlerTable(checkDomains(domains));
    for (const domain of table.domains) {
      const module = (await import(pathToFileURL(domainTasksPath(domain)).href)) as {
        handlers?: unknown;
      };
      const handlers = module.handlers;
      if (typeof handlers !== "object" || handlers === null) {
        throw new TypeError(`domain '${domain}': tasks.js exports no 'handlers' table`);
      }
      for (const [type, run] of Object.entries(handlers)) {
        if (typeof run !== "function") {
          throw new TypeError(`domain '${domain}': handler of '${type}' is not a function`);
        }
        const other = table.handlers.get(type);
        if (other) {
          throw new TypeError(
            `task type '${type}' is registered by both '${other.domain}' and '${domain}'`,
          );
        }
        table.handlers.set(type, { domain, run: run as AnyHandler });
      }
    }
    return table;
  }

  /** Task types the table runs. */
  get types(): readonly string[] {
    return [...this.handlers.keys()];
  }

  /**
   * Runs one task message.
   *
   * @throws TypeError naming the type when no domain the worker loaded registers it.
   */
  handle(context: KernelContext, task: unknown): unknown {
    const type = (task as { type?: unknown } | null)?.type;
    const handler = typeof type === "string" ? this.handlers.get(type) : undefined;
    if (!handler) {
      throw new TypeError(
        `unknown task type ${JSON.stringify(type)}: no domain of this pool (${this.domains.join(", ")}) registers it`,
      );
    }
    return handler.run(context, task);
  }
}
