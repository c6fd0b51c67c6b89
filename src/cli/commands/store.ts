/** Store commands: import, export, images, rm, gc, verify, stats. */
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { parseImageRef } from '../../store/image-name.js';
import type { StrategyName } from '../../strategy/strategy.js';
import { exportImageFile } from '../../images/export.js';
import { OUTPUT_FORMATS } from '../../container/writers.js';
import { importImageFile } from '../../images/import.js';
import { DEFAULT_CHUNKER_SPEC } from '../../strategy/defaults.js';
import { parseChunkerSpec } from '../../strategy/chunker.js';
import { parseSize } from '../../util/size.js';
import { collectGarbage, storeStats, verifyStore } from '../../images/maintenance.js';
import { removeImages } from '../../images/names.js';
import { removeStaleStages } from '../../strategy/files/stage-dir.js';
import { printJson, progressBar, safe, table, type GlobalOptions } from '../output.js';
import { humanBytes } from '../../util/size.js';
import { withImageStore, withStore } from '../../store/location.js';
import { S3Store, s3Gc, s3ImageRows, s3Verify } from './s3-store.js';
import { action, common, imageInput } from '../program.js';
import { VmdnError } from '../../errors.js';

/**
 * --strategy auto picks by what the copy must keep: bit-exact chunks for the
 * disk layer, chunks without unused blocks for the blocks layer, the files
 * strategy for the file layer (it falls back to chunks per partition where
 * there is no rebuild, and import says so).
 */
function chooseStrategy(o: { strategy: StrategyName | 'auto'; fidelity: 'disk' | 'blocks' | 'files'; sparsify?: boolean }): { strategy: StrategyName; sparsify: boolean } {
  if (o.strategy !== 'auto') return { strategy: o.strategy, sparsify: o.sparsify ?? false };
  if (o.fidelity === 'files') return { strategy: 'files', sparsify: false };
  return { strategy: 'chunks', sparsify: o.fidelity === 'blocks' || (o.sparsify ?? false) };
}

/** An existing output is only replaced when asked to (--force): a typo must not destroy an image. */
export function refuseExisting(out: string, force?: boolean): void {
  if (force) return;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(out);
  } catch {
    return;
  }
  throw new VmdnError('E_USAGE', `${out} exists${st.isFile() ? '' : ' (and is not a regular file)'}; use --force to replace it`, { out });
}

export function registerStoreCommands(program: Command): void {
  imageInput(common(program.command('import')))
    .description('import a disk image (qcow2, VMDK, VHD, VDI or raw, or an OVA; each may be inside .gz, .xz, .zst or .bz2; told apart by content) into the store under a name')
    .argument('<image>', 'image file')
    .requiredOption('-n, --name <name[:tag]>', 'name to store it under')
    .addOption(new Option('--chunker <spec>', 'chunking: cdc[:min:avg:max] or fixed[:size], e.g. cdc:16k:64k:256k, fixed:64k').default(DEFAULT_CHUNKER_SPEC))
    .addOption(new Option('--strategy <name>', 'chunks: bit-exact chunks of the disk; files: ext2/3/4 filesystems recorded as parameters + file tree (rebuilt with mke2fs on export, faithful at the file layer), the rest as chunks; packages: as files, but unmodified files of installed dpkg packages are references to the .debs (fetched from the Debian archive, stored once for all images); auto: chosen from --fidelity').choices(['chunks', 'files', 'packages', 'auto']).default('auto'))
    .addOption(new Option('--fidelity <layer>', 'with --strategy auto, what the copy must keep: disk (bit for bit), blocks (used blocks; unused ones dropped), files (files and their metadata)').choices(['disk', 'blocks', 'files']).default('disk'))
    .addOption(new Option('--cuts <by>', 'chunk boundaries: "files" also cuts along each file\'s data in readable filesystems (the same file gives the same chunks wherever it sits), "disk" cuts over the raw disk only').choices(['files', 'disk']).default('files'))
    .addOption(new Option('--min-file <size>', 'with --cuts files: smaller files share chunks with their neighbours').default('16k'))
    .option('--sparsify', 'drop blocks no filesystem uses (they export as zeros): faithful at the blocks layer, not bit for bit')
    .option('--apt-source <url>', 'with --strategy packages: a Debian archive root to take packages from, searched in the image release\'s suites (repeatable; default: the host\'s apt sources, else the image\'s own)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addOption(new Option('--fallback <how>', 'with --strategy packages: a package version the archive lacks is stored as the image\'s own files (files), or the import fails naming it (error)').choices(['files', 'error']).default('files'))
    .option('--deb-cache <dir>', 'with --strategy packages: keep downloaded .debs here too (shared by stores; verified on every use)')
    .option('--keyring <file>', 'with --strategy packages: the OpenPGP keyring (binary or armored) each archive suite\'s InRelease must be signed with; its Packages indexes are checked against that signed Release, each .deb against its index (default: the source\'s signed-by keyring in the host\'s apt configuration, else /usr/share/keyrings/debian-archive-keyring.gpg)')
    .option('--disk <n>', 'an OVA: import only its disk N (1-based, in the OVF\'s order) under --name; without it every disk is imported, as NAME-disk1, NAME-disk2, ...')
    .option('--max-size <size>', 'a compressed image: refuse it if it decompresses to more than this (default 16T)')
    .action(action(async (image: string, o: GlobalOptions & { disk?: string; maxSize?: string; name: string; chunker: string; strategy: StrategyName | 'auto'; fidelity: 'disk' | 'blocks' | 'files'; cuts: 'files' | 'disk'; minFile: string; sparsify?: boolean; aptSource: string[]; fallback: 'files' | 'error'; debCache?: string; keyring?: string }) => {
      const ref = parseImageRef(o.name);
      const chunker = parseChunkerSpec(o.chunker);
      const choice = chooseStrategy(o);
      const cuts = { by: o.cuts, minFile: parseSize(o.minFile), sparsify: choice.sparsify };
      const bar = progressBar(o, 'import');
      const t0 = Date.now();
      const disk = o.disk === undefined ? undefined : Number(o.disk);
      if (disk !== undefined && !(Number.isSafeInteger(disk) && disk >= 1)) throw new VmdnError('E_USAGE', `--disk ${o.disk}: give a disk number, 1 or more`);
      const maxSize = o.maxSize === undefined ? undefined : parseSize(o.maxSize);
      const r = await withImageStore(o.store, (s) => importImageFile(s, image, ref, { disk, maxSize, chunker, strategy: choice.strategy, cuts, packages: { aptSources: o.aptSource, fallback: o.fallback, debCache: o.debCache ?? process.env.VMDN_DEB_CACHE, keyring: o.keyring }, onProgress: bar.onProgress })).finally(bar.stop);
      const seconds = (Date.now() - t0) / 1000;
      if (o.json) return printJson({ ...r, strategy: choice.strategy, sparsify: choice.sparsify, seconds });
      const s = r.stats;
      if (r.images && r.images.length > 1) console.log(`imported ${r.images.map((i) => `${i.ref} (manifest ${i.manifest.slice(0, 12)})`).join(', ')} in ${seconds.toFixed(1)} s; first disk:`);
      else console.log(`imported ${r.ref} (manifest ${r.manifest.slice(0, 12)}) in ${seconds.toFixed(1)} s`);
      console.log(`  allocated ${humanBytes(s.allocated)}, data ${humanBytes(s.dataBytes)} in ${s.chunks} chunks (${s.distinctChunks} distinct)`);
      console.log(`  new objects ${s.newObjects}: ${humanBytes(s.newBytes)} -> ${humanBytes(s.newStoredBytes)} stored; the rest was already in the store`);
      for (const n of r.notes) console.log(`  ${safe(n)}`);
      for (const p of r.packages ?? []) {
        console.log(`  volume ${p.index}: in packages ${humanBytes(p.bytes.package)}, modified package files ${humanBytes(p.bytes.modified)}, own files ${humanBytes(p.bytes.own + p.bytes.fallback)}; ${humanBytes(p.mirrorBytes)} fetched from the archive`);
      }
    }));

  common(program.command('export'))
    .description('rebuild a stored image as a file, bit for bit')
    .argument('<name[:tag]>', 'image name')
    .argument('<out>', 'output file (.raw/.img, .qcow2, .vmdk, .vhd, .vhdx, .vdi, .ova), or - for stdout (vmdk, the default there, raw or vhd-fixed: the others have tables before the data)')
    .addOption(new Option('--format <format>', 'output format (default: from the extension): raw, qcow2, vmdk (streamOptimized: compressed, written front to back, the OVA flavour), vmdk-sparse (monolithicSparse), vhd (dynamic), vhd-fixed (Azure: size rounded up to a whole MiB), vhdx (dynamic), vdi (dynamic), ova (a tar: the OVF descriptor, the one kept from import or a generated one, then the disks as streamOptimized VMDK)').choices([...OUTPUT_FORMATS, 'ova']))
    .option('--add-disk <name[:tag]>', 'with ova: a further stored image as the next disk of the OVA (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addOption(new Option('--compress <algo>', 'compress qcow2 clusters').choices(['zstd', 'deflate']))
    .option('-f, --force', 'replace <out> if it exists')
    .action(action(async (name: string, out: string, o: GlobalOptions & { format?: string; compress?: 'zstd' | 'deflate'; force?: boolean; addDisk: string[] }) => {
      const ref = parseImageRef(name);
      const toStdout = out === '-';
      if (!toStdout) refuseExisting(out, o.force);
      else if (process.stdout.isTTY) throw new VmdnError('E_USAGE', 'stdout is a terminal: redirect or pipe the image (vmdn export NAME - > disk.vmdk)');
      const bar = progressBar(o, 'export');
      const t0 = Date.now();
      const more = o.addDisk.map(parseImageRef);
      const r = await withImageStore(o.store, (s) => exportImageFile(s, ref, out, { format: o.format, compress: o.compress, onProgress: bar.onProgress, addDisks: more }), { create: false }).finally(bar.stop);
      const seconds = (Date.now() - t0) / 1000;
      // with the image on stdout, the summary goes to stderr
      if (o.json && toStdout) return void process.stderr.write(`${JSON.stringify({ ...r, seconds })}\n`);
      if (o.json) return printJson({ ...r, seconds });
      (toStdout ? console.error : console.log)(`exported ${r.ref} to ${safe(r.out)} (${r.format}, ${humanBytes(r.virtualSize)} virtual, ${humanBytes(r.bytesWritten)} data) in ${seconds.toFixed(1)} s`);
    }));

  common(program.command('images'))
    .description('list stored images: virtual size, allocated, non-zero data, stored (compressed) and unique bytes')
    .action(action(async (o: GlobalOptions) => withImageStore(o.store, async (s) => {
      const rows = s instanceof S3Store ? await s3ImageRows(s) : (await s.names.list()).map((i) => ({
        ref: `${i.name}:${i.tag}`,
        manifest: i.manifest,
        format: i.format,
        created: i.created,
        virtualBytes: i.virtualSize,
        allocatedBytes: i.allocatedSize,
        dataBytes: i.dataSize,
        storedBytes: s.index.manifestStoredBytes(i.manifest),
        uniqueBytes: s.index.uniqueStoredBytes(i.manifest),
        // a boot profile recorded on the image (vmdn nbd --record-profile), or null
        profile: s.index.getProfile(i.manifest) ?? null,
      }));
      if (o.json) return printJson({ images: rows });
      if (rows.length === 0) return void console.log('no images (vmdn import IMAGE --name NAME to add one)');
      console.log(table(['IMAGE', 'VIRTUAL', 'ALLOCATED', 'DATA', 'STORED', 'UNIQUE', 'MANIFEST'],
        rows.map((r) => [r.ref, humanBytes(r.virtualBytes), humanBytes(r.allocatedBytes), humanBytes(r.dataBytes), humanBytes(r.storedBytes), humanBytes(r.uniqueBytes), r.manifest.slice(0, 12)])));
      const profiled = rows.filter((r) => r.profile).map((r) => r.ref);
      if (profiled.length) console.log(`\nboot profile recorded: ${profiled.join(', ')}`);
      console.log('\nSTORED: compressed bytes of the objects the image needs; UNIQUE: of those, the ones no other image shares (what rm + gc would free).');
    }, { create: false })));

  common(program.command('rm'))
    .description('remove image names (objects stay until gc)')
    .argument('<name[:tag]...>', 'images to remove')
    .action(action(async (names: string[], o: GlobalOptions) => withImageStore(o.store, async (s) => {
      const refs = names.map(parseImageRef);
      await removeImages(s, refs);
      const removed = refs.map((r) => `${r.name}:${r.tag}`);
      if (o.json) return printJson({ removed });
      console.log(`removed ${removed.join(', ')}; run "vmdn gc" to free unshared objects`);
    }, { create: false })));

  common(program.command('gc'))
    .description('delete objects no image needs, and temp files left by interrupted runs')
    .option('--dry-run', 'only report what would be removed')
    .option('--pack-loose', 'also move objects kept one per file (stores made before packs) into a pack')
    .option('--grace <duration>', 'an S3 store: packs no image needs are condemned, and deleted by a later gc at least this long after (longer than any import takes; docs/format.md)', '1h')
    .action(action(async (o: GlobalOptions & { dryRun?: boolean; grace: string; packLoose?: boolean }) => withImageStore(o.store, async (s) => {
      if (s instanceof S3Store) return s3Gc(s, o);
      const r = await collectGarbage(s, { dryRun: o.dryRun, packLoose: o.packLoose });
      // export stages of killed runs live outside any store (/dev/shm): gc is where they go too
      const removedStages = (await removeStaleStages({ dryRun: o.dryRun })).length;
      if (o.json) return printJson({ ...r, removedStages });
      console.log(`${o.dryRun ? 'would remove' : 'removed'} ${r.removedObjects} objects (${humanBytes(r.freedBytes)}), ${r.removedTmpFiles} temp files and ${removedStages} stale export stages; ${r.removedPacks} packs removed (${r.repackedPacks} rewritten first)${r.packedLoose ? `; ${r.packedLoose} loose objects moved into a pack` : ''}`);
    }, { create: false })));

  common(program.command('verify'))
    .description('re-hash every object and check every image can be rebuilt; exits 5 if anything is wrong')
    .action(action(async (o: GlobalOptions) => withImageStore(o.store, async (s) => {
      if (s instanceof S3Store) return s3Verify(s, o);
      const bar = progressBar(o, 'verify');
      // shares the writers' lease: gc deleting unnamed objects midway would read as missing files
      const r = await s.writing(() => verifyStore(s, { onProgress: bar.onProgress })).finally(bar.stop);
      const bad = r.problems.filter((p) => p.problem !== 'unindexed');
      if (o.json) printJson({ ok: bad.length === 0, ...r });
      else {
        console.log(`checked ${r.objectsChecked} objects (${humanBytes(r.bytesChecked)}) and ${r.imagesChecked} images`);
        if (r.packGarbageBytes) console.log(`  ${humanBytes(r.packGarbageBytes)} of pack bytes no object uses (left by interrupted runs or deletes; gc reclaims them)`);
        for (const p of r.problems) console.log(`  ${p.problem.padEnd(12)} ${p.digest.slice(0, 16)}${p.image ? ` (${p.image})` : ''}: ${p.detail}`);
        console.log(bad.length === 0 ? 'store OK' : `${bad.length} problems`);
      }
      return bad.length === 0 ? 0 : 5;
    }, { create: false })));

  common(program.command('stats'))
    .description('store totals and what dedup and compression saved')
    .action(action(async (o: GlobalOptions) => withStore(o.store, async (s) => {
      const st = storeStats(s);
      const out = { store: s.dir, ...st, dedupRatio: st.objectBytes ? st.logicalBytes / st.objectBytes : 1, totalRatio: st.storedBytes ? st.logicalBytes / st.storedBytes : 1 };
      if (o.json) return printJson(out);
      console.log(table(['', 'VALUE'], [
        ['store', safe(s.dir)],
        ['images', st.images],
        ['objects', st.objects],
        ['virtual size of all images', humanBytes(st.virtualBytes)],
        ['non-zero data of all images', humanBytes(st.logicalBytes)],
        ['after dedup', humanBytes(st.objectBytes)],
        ['on disk (zstd)', humanBytes(st.storedBytes)],
        ['saved', `${(out.totalRatio).toFixed(2)}x`],
      ]));
    }, { create: false })));
}
