/** Commands that read inside images without mounting them: inspect, ls, cat, diff. */
import { once } from 'node:events';
import { Option, type Command } from 'commander';
import { printJson, safe, table, type GlobalOptions } from '../output.js';
import { action, common, imageInput } from '../program.js';
import { humanBytes } from '../../util/size.js';
import { withImage } from '../../inspect/open-image.js';
import { listVolumes, pickVolume } from '../../fs/volumes.js';
import { inspectDisk } from '../../inspect/inspect.js';
import { packageBytes } from '../../inspect/package-bytes.js';
import { walkTree, type TreeEntry } from '../../inspect/tree.js';
import { displayPath, escapeBytes, longLine } from '../../inspect/display.js';
import { diffImages, LAYERS, type Layer } from '../../inspect/diff.js';
import { printDiff } from './inspect-diff-text.js';
import { resolvePath } from '../../os/fs-read.js';
import { VmdnError } from '../../errors.js';

const partitionOption = () => new Option('--partition <n>', 'partition number (0: a filesystem on the whole disk)').argParser((v) => {
  if (!/^\d+$/.test(v)) throw new VmdnError('E_USAGE', `--partition: not a partition number: ${v}`);
  return Number(v);
});

let epipeQuiet = false;

/** Write to stdout honouring backpressure; a closed reader (| head) ends the output quietly. */
async function writeOut(b: Uint8Array | string): Promise<boolean> {
  if (!epipeQuiet) {
    // Only these commands stream to stdout, so only they treat a vanished reader as the end of output.
    epipeQuiet = true;
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  if (process.stdout.destroyed) return false;
  try {
    if (!process.stdout.write(b)) await Promise.race([once(process.stdout, 'drain'), once(process.stdout, 'close')]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return false;
    throw err;
  }
  return !process.stdout.destroyed;
}

export function registerInspectCommands(program: Command): void {
  imageInput(common(program.command('inspect')))
    .description('partitions, filesystems, OS and packages of an image file or stored image')
    .argument('<image>', 'image file (raw/qcow2) or stored NAME[:TAG]')
    .option('--package-bytes', 'also split the root filesystem\'s file bytes into unmodified package files, modified package files and the image\'s own data (checked against the image\'s dpkg md5sums; reads every package file)')
    .action(action(async (image: string, o: GlobalOptions & { packageBytes?: boolean }) => withImage(image, o.store, async (img) => {
      const r = await inspectDisk(img.disk);
      const split = o.packageBytes ? await packageBytes((await pickVolume(await listVolumes(img.disk))).fs) : undefined;
      // imported from an OVA: the object holding its OVF descriptor (written back by export to .ova)
      const ovf = img.manifest?.ovf;
      if (o.json) return printJson({ image: img.label, source: img.source, ...(ovf ? { ovf } : {}), ...r, ...(o.packageBytes ? { packageBytes: split ?? null } : {}) });
      console.log(`${safe(img.label)}: ${humanBytes(r.virtualSize)}, partition table ${r.scheme}${r.diskId ? ` (${r.diskId})` : ''}`);
      if (ovf) console.log(`OVF descriptor kept from the OVA: object ${ovf}`);
      if (r.partitions.length) {
        console.log('\n' + table(['#', 'START', 'SECTORS', 'SIZE', 'TYPE', 'NAME', 'UUID'],
          r.partitions.map((p) => [String(p.index), p.start, p.size, humanBytes(p.length), p.typeName, escapeBytes(Buffer.from(p.name)), p.uuid ?? ''])));
      }
      console.log('\n' + table(['#', 'FS', 'UUID', 'LABEL', 'SIZE', 'USED'],
        r.filesystems.map((f) => [String(f.index), f.kind, f.uuid ?? '', escapeBytes(Buffer.from(f.label ?? '')), f.totalBytes !== undefined ? humanBytes(f.totalBytes) : f.note ?? '', f.usedBytes !== undefined ? humanBytes(f.usedBytes) : ''])));
      if (r.os) {
        const esc = (s: string | null) => (s === null ? '-' : escapeBytes(Buffer.from(s)));
        console.log(`\nOS (partition ${r.os.partition}): ${esc(r.os.prettyName)} [ID=${esc(r.os.id)} VERSION_ID=${esc(r.os.versionId)}], hostname ${esc(r.os.hostname)}`);
        console.log(`packages: ${r.os.packageManager ?? 'none found'}${r.os.packageManager ? `, ${r.os.packageCount} installed (--json lists them)` : ''}`);
      } else console.log('\nno operating system found');
      if (o.packageBytes) {
        console.log(split
          ? `bytes: in packages ${humanBytes(split.packages.bytes)} (${split.packages.files} files), in modified package files ${humanBytes(split.modified.bytes)} (${split.modified.files}), user data and other own files ${humanBytes(split.own.bytes)} (${split.own.files})`
          : 'bytes: no dpkg database on the root filesystem');
      }
      for (const w of [...r.warnings, ...(r.os?.warnings ?? [])]) console.log(`warning: ${escapeBytes(Buffer.from(w))}`);
    })));

  imageInput(common(program.command('ls')))
    .description('list files inside an image (read directly, nothing is mounted)')
    .argument('<image>', 'image file (raw/qcow2) or stored NAME[:TAG]')
    .argument('[path]', 'path inside the image', '/')
    .option('-l, --long', 'mode, links, owner, size and mtime (UTC) like ls -l')
    .option('-R, --recursive', 'list subdirectories recursively')
    .option('--hash', 'add the SHA-256 of each regular file\'s contents')
    .addOption(partitionOption())
    .action(action(async (image: string, p: string, o: GlobalOptions & { long?: boolean; recursive?: boolean; hash?: boolean; partition?: number }) => withImage(image, o.store, async (img) => {
      const vol = await pickVolume(await listVolumes(img.disk), o.partition);
      const walk = walkTree(vol.fs, p, { recursive: o.recursive, hash: o.hash, xattrs: !!o.json });
      if (o.json) {
        // Streamed, one compact entry per line: a whole system is tens of thousands of entries,
        // and holding them all only to print them would cost memory for nothing.
        // The first entry is awaited before anything is written, so a bad PATH is a clean JSON error.
        const it = walk[Symbol.asyncIterator]();
        let r = await it.next();
        const head = JSON.stringify({ image: img.label, partition: vol.index, path: p }).slice(0, -1);
        if (!(await writeOut(`${head},"entries":[`))) return;
        for (let sep = '\n'; !r.done; sep = ',\n', r = await it.next()) {
          if (!(await writeOut(sep + JSON.stringify(r.value)))) return;
        }
        await writeOut('\n]}\n');
        return;
      }
      for await (const e of walk) {
        // Full paths when recursing (like virt-ls -R), names otherwise.
        const name = o.recursive ? displayPath(e) : escapeBytes(lastComponent(e));
        const line = o.long ? longLine(e, name) : o.hash && e.sha256 ? `${e.sha256}  ${name}` : name;
        if (!(await writeOut(line + (e.error ? `  [${safe(e.error)}]` : '') + '\n'))) return;
      }
    })));

  imageInput(common(program.command('cat')))
    .description('write a file from inside an image to stdout (raw bytes)')
    .argument('<image>', 'image file (raw/qcow2) or stored NAME[:TAG]')
    .argument('<path>', 'path of a regular file inside the image (symlinks are followed inside the image)')
    .addOption(partitionOption())
    .action(action(async (image: string, p: string, o: GlobalOptions & { partition?: number }) => withImage(image, o.store, async (img) => {
      const vol = await pickVolume(await listVolumes(img.disk), o.partition);
      const node = await resolvePath(vol.fs, p);
      if (node.type === 'dir') throw new VmdnError('E_USAGE', `${p}: is a directory (use vmdn ls)`, { path: p, type: node.type });
      if (node.type !== 'file') throw new VmdnError('E_UNSUPPORTED', `${p}: not a regular file (${node.type})`, { path: p, type: node.type });
      for await (const b of vol.fs.readFile(node)) if (!(await writeOut(b))) return;
    })));

  imageInput(common(program.command('diff')))
    .description('what differs between two images (files or stored names) at one layer; exits 0 whenever the comparison ran')
    .argument('<a>', 'image A (file or NAME[:TAG])')
    .argument('<b>', 'image B (file or NAME[:TAG])')
    .addOption(new Option('--layer <layer>', 'disk: partition table and differing MiB ranges; blocks: used blocks per filesystem; files: added/removed/changed paths; packages: added/removed/upgraded').choices([...LAYERS]).default('files'))
    .addOption(partitionOption())
    .action(action(async (a: string, b: string, o: GlobalOptions & { layer: Layer; partition?: number }) => withImage(a, o.store, (ia) => withImage(b, o.store, async (ib) => {
      const r = await diffImages(ia, ib, o.layer, { partition: o.partition });
      if (o.json) return printJson({ a: ia.label, b: ib.label, ...r });
      await writeOut(printDiff(r).join('\n') + '\n');
    }))));
}

function lastComponent(e: TreeEntry): Uint8Array {
  const bytes = e.pathB64 ? Buffer.from(e.pathB64, 'base64') : Buffer.from(e.path);
  return bytes.subarray(bytes.lastIndexOf(0x2f) + 1);
}
