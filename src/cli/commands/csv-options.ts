import { InvalidArgumentError } from "commander";

/** Parses --peers (and --nodes): id=port pairs. */
export function peersOption(text: string): Map<number, number> {
  const peers = new Map<number, number>();
  for (const item of text.split(",")) {
    const m = /^\s*(\d+)\s*=\s*(\d+)\s*$/.exec(item);
    const id = Number(m?.[1]);
    const port = Number(m?.[2]);
    if (!m || id < 1 || id > 16 || port < 1 || port > 65535)
      throw new InvalidArgumentError(`"${item}" is not id=port (id 1 to 16, port 1 to 65535)`);
    if (peers.has(id)) throw new InvalidArgumentError(`node ${id} is listed twice`);
    peers.set(id, port);
  }
  return peers;
}
