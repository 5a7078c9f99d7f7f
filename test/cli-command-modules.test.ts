import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram, COMMAND_MODULES } from "../src/cli/main.js";

describe("the command line loads only the module of the command it runs", () => {
  it("each module registers exactly the top-level commands the table names for it", async () => {
    for (const module of COMMAND_MODULES) {
      const program = new Command("hvlab");
      (await module.load())(program);
      expect(program.commands.map((c) => c.name())).toEqual(module.names);
    }
  });

  it("a command's name loads its module alone; help and unknown names load every module", async () => {
    const storage = await buildProgram(["storage", "convert", "--help"]);
    expect(storage.commands.map((c) => c.name())).toEqual(["storage"]);
    // migrate alone still has the live mode's options, which migrate-live's module adds.
    const migrate = await buildProgram(["migrate", "--listen", "0"]);
    const options = migrate.commands[0]?.options.map((o) => o.long);
    expect(options).toContain("--listen");
    expect(options).toContain("--to");
    const queue = await buildProgram(["queue", "status", "--json"]);
    expect(queue.commands.map((c) => c.name())).toEqual(["worker", "queue"]);
    const every = COMMAND_MODULES.flatMap((m) => m.names);
    for (const argv of [[], ["--help"], ["no-such-command"]]) {
      const program = await buildProgram(argv);
      expect(program.commands.map((c) => c.name())).toEqual(every);
    }
  });

  it("--version alone loads no command module (it measures start-up), and help beside it still lists them all", async () => {
    for (const argv of [["--version"], ["-V"]]) {
      const program = await buildProgram(argv);
      expect(program.commands).toEqual([]);
      expect(program.version()).toMatch(/^\d+\.\d+\.\d+/);
    }
    const every = COMMAND_MODULES.flatMap((m) => m.names);
    const help = await buildProgram(["--version", "--help"]);
    expect(help.commands.map((c) => c.name())).toEqual(every);
    const command = await buildProgram(["paging", "--version"]);
    expect(command.commands.map((c) => c.name())).toEqual(["paging"]);
  });
});
