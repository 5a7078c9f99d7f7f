import { readdirSync, readFileSync } from "node:fs";
import { join, posix, relative } from "node:path";
import ts from "typescript";

/*
 * The import graph of the project's TypeScript files and the rules it keeps
 * (docs/architecture.md): no circles in src/, src/pool/ below every domain,
 * oracles out of production code. Files are keyed by their path from the
 * project root with forward slashes ("src/pool/pool.ts"); an edge is any
 * relative import, export-from, dynamic import or module augmentation
 * (`declare module "../pool/registry.js"`), type-only ones included, since a
 * type import is still a dependency of the design.
 */

/** Source text by path from the project root. */
export type SourceTree = ReadonlyMap<string, string>;

/** Reads every .ts file (not .d.ts) under the given folders of a project. */
export function readSourceTree(root: string, folders: readonly string[]): SourceTree {
  const tree = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
        tree.set(relative(root, path).split("\\").join("/"), readFileSync(path, "utf8"));
      }
    }
  };
  for (const folder of folders) walk(join(root, folder));
  return tree;
}

/** The files of the tree each file imports (relative specifiers resolved; packages left out). */
export function importGraph(tree: SourceTree): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, text] of tree) {
    const targets = new Set<string>();
    for (const { fileName } of ts.preProcessFile(text, true, true).importedFiles) {
      if (!fileName.startsWith(".")) continue;
      const resolved = posix.normalize(posix.join(posix.dirname(file), fileName));
      const candidate = resolved.replace(/\.js$/, ".ts");
      for (const path of [candidate, `${resolved}.ts`, `${resolved}/index.ts`]) {
        if (tree.has(path)) {
          targets.add(path);
          break;
        }
      }
    }
    graph.set(file, [...targets].sort());
  }
  return graph;
}

/** Import circles: each a list of files, every one reaching all the others (Tarjan's components). */
export function importCircles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  let next = 0;
  const visit = (file: string): void => {
    index.set(file, next);
    low.set(file, next);
    next++;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file) ?? 0, low.get(target) ?? 0));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file) ?? 0, index.get(target) ?? 0));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      for (;;) {
        const member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
        if (member === file) break;
      }
      const selfImport = (graph.get(file) ?? []).includes(file);
      if (component.length > 1 || selfImport) circles.push(component.sort());
    }
  };
  for (const file of [...graph.keys()].sort()) if (!index.has(file)) visit(file);
  return circles;
}

/**
 * Where files outside src/wasm/ reach a module's raw exports: an import of
 * an `...Exports` type or of `instantiateKernel` from src/wasm/ (the
 * wrappers are the only way to a kernel). `strict` false allows
 * `instantiateKernel` (tests of the loader itself instantiate modules
 * without touching their exports).
 */
export function rawExportUses(tree: SourceTree, strict = true): string[] {
  const uses: string[] = [];
  for (const [file, text] of tree) {
    if (file.startsWith("src/wasm/")) continue;
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
    for (const statement of source.statements) {
      if (!ts.isImportDeclaration(statement) && !ts.isExportDeclaration(statement)) continue;
      const specifier = statement.moduleSpecifier;
      if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith(".")) continue;
      const target = posix.normalize(posix.join(posix.dirname(file), specifier.text));
      if (!target.startsWith("src/wasm/")) continue;
      const names: string[] = [];
      if (ts.isImportDeclaration(statement)) {
        const bindings = statement.importClause?.namedBindings;
        if (bindings && ts.isNamedImports(bindings)) {
          for (const element of bindings.elements) {
            names.push((element.propertyName ?? element.name).text);
          }
        } else if (bindings && ts.isNamespaceImport(bindings)) {
          names.push("* (a namespace import)");
        }
      } else if (statement.exportClause && ts.isNamedExports(statement.exportClause)) {
        for (const element of statement.exportClause.elements) {
          names.push((element.propertyName ?? element.name).text);
        }
      }
      for (const name of names) {
        const raw =
          name.endsWith("Exports") ||
          name.startsWith("*") ||
          (strict && name === "instantiateKernel");
        if (raw) uses.push(`raw kernel exports outside src/wasm/: ${file} imports ${name}`);
      }
    }
  }
  return uses;
}

/** Folders the pool may import: the layers below the domains. */
const BELOW_DOMAINS = ["src/pool/", "src/wasm/", "src/memory/", "src/util/"];

/**
 * Every rule the import graph breaks, one line each (empty when it keeps
 * them all): circles among src/ files, src/pool/ importing anything above
 * src/wasm/ and src/memory/, and a file of src/ outside src/oracle/
 * importing an oracle (oracles serve tests and benchmarks only).
 */
export function importGraphProblems(tree: SourceTree): string[] {
  const graph = importGraph(tree);
  const src = new Map([...graph].filter(([file]) => file.startsWith("src/")));
  const problems = importCircles(src).map(
    (circle) => `circle of ${circle.length} files: ${circle.join(" -> ")}`,
  );
  for (const [file, targets] of src) {
    for (const target of targets) {
      if (file.startsWith("src/pool/") && !BELOW_DOMAINS.some((f) => target.startsWith(f))) {
        problems.push(`the pool imports a domain: ${file} -> ${target}`);
      }
      if (!file.startsWith("src/oracle/") && target.startsWith("src/oracle/")) {
        problems.push(`production code imports an oracle: ${file} -> ${target}`);
      }
    }
  }
  return problems;
}
