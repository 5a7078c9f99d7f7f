import { VolumeFormatError } from "./errors.js";
import { SECTOR } from "./layout.js";
import { leaseOffset, parseLease } from "./lease.js";
import type { Lun } from "./lun.js";
import type { JournalState } from "./volume.js";
import { Volume } from "./volume.js";

/** One finding of {@link checkVolume}. */
export interface VolumeProblem {
  /** Byte offset on the LUN, or -1 for the volume as a whole. */
  readonly offset: number;
  readonly message: string;
}

/** What {@link checkVolume} found. */
export interface VolumeCheckReport {
  readonly lun: string;
  /** True when nothing is wrong. */
  readonly ok: boolean;
  readonly problems: readonly VolumeProblem[];
  readonly generation?: number;
  readonly epoch?: number;
  readonly coordinator?: number;
  readonly journal?: JournalState;
  readonly files?: number;
  readonly usedClusters?: number;
  readonly dataClusters?: number;
  /** Coordinator terms in the epoch log. */
  readonly terms?: number;
}

/** Bytes read at a time when reading every file back. */
const READ_CHUNK = 1 << 20;

/**
 * Verifies a volume without writing to it (a pending journal transaction is
 * applied in memory, as the next coordinator would apply it): the
 * superblock and every file entry parse; no cluster is owned twice; the
 * allocation bitmap equals the union of the files' extents; the journal is
 * empty, applied or replayable; the epoch log's terms are distinct, their
 * first generations rise with the epoch, and the superblock's epoch is the
 * last term; the coordinator's lease sector is zeros or a lease for a term
 * the volume has opened; every file's clusters read back.
 */
export async function checkVolume(lun: Lun): Promise<VolumeCheckReport> {
  let volume: Volume;
  try {
    volume = await Volume.open(lun, { replay: false });
  } catch (error) {
    const offset = error instanceof VolumeFormatError ? error.offset : -1;
    return { lun: lun.name, ok: false, problems: [{ offset, message: (error as Error).message }] };
  }
  const l = volume.layout;
  const problems: VolumeProblem[] = [];
  if (volume.journal.state === "stale")
    problems.push({
      offset: l.journalOffset,
      message: `journal transaction ${volume.journal.sequence} of epoch ${volume.journal.epoch} can never apply (superblock generation ${volume.generation}, epoch ${volume.epoch})`,
    });
  const owner = new Int32Array(l.dataClusters).fill(-1);
  const files = volume.list();
  files.forEach((file, index) => {
    for (const e of file.extents)
      for (let c = e.first; c < e.first + e.count; c++) {
        const other = owner[c] ?? -1;
        if (other >= 0)
          problems.push({
            offset: l.dataOffset + c * l.clusterBytes,
            message: `cluster ${c} is owned by ${JSON.stringify(files[other]?.name)} and ${JSON.stringify(file.name)}`,
          });
        else owner[c] = index;
      }
  });
  let used = 0;
  for (let c = 0; c < l.dataClusters; c++) {
    const bit = volume.bit(c);
    used += bit;
    const owned = (owner[c] ?? -1) >= 0 ? 1 : 0;
    if (bit !== owned)
      problems.push({
        offset: l.bitmapOffset + (c >>> 3),
        message: bit
          ? `cluster ${c} is marked allocated but no file holds it (leaked)`
          : `cluster ${c} is held by ${JSON.stringify(files[owner[c] ?? 0]?.name)} but marked free`,
      });
  }
  for (let c = l.dataClusters; c < l.bitmapSectors * 512 * 8; c++)
    if (volume.bit(c))
      problems.push({
        offset: l.bitmapOffset + (c >>> 3),
        message: `bit ${c} is past the ${l.dataClusters} data clusters and must be zero`,
      });
  let terms: ReturnType<Volume["epochs"]> = [];
  try {
    terms = volume.epochs();
  } catch (error) {
    problems.push({
      offset: error instanceof VolumeFormatError ? error.offset : l.epochLogOffset,
      message: (error as Error).message,
    });
  }
  for (let i = 1; i < terms.length; i++) {
    const before = terms[i - 1];
    const term = terms[i];
    if (before && term && term.firstGeneration <= before.firstGeneration)
      problems.push({
        offset: l.epochLogOffset,
        message: `epoch ${term.epoch} (node ${term.node}) starts at generation ${term.firstGeneration}, not after epoch ${before.epoch}'s start ${before.firstGeneration}: terms overlap`,
      });
  }
  const last = terms[terms.length - 1];
  if (
    volume.epoch > 0 &&
    (!last || last.epoch !== volume.epoch || last.node !== volume.coordinator)
  )
    problems.push({
      offset: 40,
      message: `the superblock's epoch ${volume.epoch} (node ${volume.coordinator}) is not the epoch log's last term${last ? ` (${last.epoch}, node ${last.node})` : ""}`,
    });
  if (last && last.firstGeneration > volume.generation)
    problems.push({
      offset: l.epochLogOffset,
      message: `epoch ${last.epoch} starts at generation ${last.firstGeneration}, after the volume's ${volume.generation}`,
    });
  const leaseAt = leaseOffset(l);
  try {
    const lease = parseLease(await lun.read(leaseAt, SECTOR), leaseAt);
    // The lease is written after the takeover's transaction, so it never names a newer term.
    if (lease && lease.epoch > volume.epoch)
      problems.push({
        offset: leaseAt + 24,
        message: `the coordinator's lease names epoch ${lease.epoch} (node ${lease.node}), newer than the volume's ${volume.epoch}`,
      });
  } catch (error) {
    problems.push({
      offset: error instanceof VolumeFormatError ? error.offset : leaseAt,
      message: (error as Error).message,
    });
  }
  for (const file of files) {
    try {
      const map = volume.lookup(file.name);
      for (let at = 0; at < file.size; at += READ_CHUNK)
        await volume.read(map, at, Math.min(READ_CHUNK, file.size - at));
    } catch (error) {
      problems.push({
        offset: -1,
        message: `${JSON.stringify(file.name)} does not read back: ${(error as Error).message}`,
      });
    }
  }
  return {
    lun: lun.name,
    ok: problems.length === 0,
    problems,
    generation: volume.generation,
    epoch: volume.epoch,
    coordinator: volume.coordinator,
    journal: volume.journal,
    files: files.length,
    usedClusters: used,
    dataClusters: l.dataClusters,
    terms: terms.length,
  };
}
