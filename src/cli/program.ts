/**
 * The vmdn program object and what every command shares: the common options
 * (--store, --json, --no-progress) and the action wrapper that turns errors
 * into messages and exit codes (through reportError, the one place for that).
 * Command groups live in ./commands/ and register themselves on `program`.
 */
import { Command } from 'commander';
import { reportError, type GlobalOptions } from './output.js';
import { setAllowedBackingFiles } from '../container/qcow2/backing.js';

export const program = new Command();
program
  .name('vmdn')
  .description('Virtual Machine Delivery Network: store VM disk images as content-addressed chunks and rebuild them bit for bit.')
  .version('0.1.0')
  .showSuggestionAfterError()
  // usage errors exit 2 like every other E_USAGE, help and --version exit 0
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .addHelpText('after', `
Store: --store DIR, else $VMDN_STORE, else ~/.local/share/vmdn (created by the first import or pull).
qcow2 backing files and VHD parents: only regular files beside the image, unless --allow-backing PATH trusts one.
Images are named NAME[:TAG]; TAG defaults to "latest".

Examples:
  vmdn import debian.qcow2 --name debian:12      import a qcow2 or raw image
  vmdn images                                    what is stored, and what each image alone costs
  vmdn export debian:12 out.raw                  rebuild it bit for bit (format from the extension)
  vmdn export debian:12 out.qcow2 --compress zstd
  vmdn rm debian:12 && vmdn gc                   forget a name, then free its unshared objects
  vmdn verify                                    re-hash every object

Exit status: 0 ok, 2 usage, 3 bad input image, 4 not found or incomplete, 5 store damaged/corrupt object,
6 I/O (disk full too), 7 upload refused (token), 8 server unreachable, 9 timed out (vmdn boot --timeout),
11 image record not trusted (--trust: unsigned, another key, expired or older than one seen).`);

export const common = (c: Command) =>
  c.option('--store <dir>', 'store directory, or an S3 bucket: s3://BUCKET[/PREFIX]?endpoint=URL&region=R (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws)').option('--json', 'print one JSON document on stdout').option('--no-progress', 'no progress bar even on a terminal');

/**
 * For commands that open image files: qcow2 backing files outside the image's
 * own directory (or not regular files) are refused unless named here.
 */
export const imageInput = (c: Command) =>
  c.option('--allow-backing <path>', 'trust this file as a qcow2 backing file or VHD parent although it is not a regular file beside the image (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[]);

export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>) {
  return async (...args: A) => {
    const opts = args[args.length - 2] as GlobalOptions;
    const ac = new AbortController();
    const onSig = () => ac.abort();
    process.once('SIGINT', onSig);
    try {
      setAllowedBackingFiles((opts as { allowBacking?: string[] })?.allowBacking ?? []);
      process.exitCode = (await fn(...args)) ?? 0;
    } catch (err) {
      process.exitCode = reportError(err, !!opts?.json);
    } finally {
      process.off('SIGINT', onSig);
    }
  };
}

