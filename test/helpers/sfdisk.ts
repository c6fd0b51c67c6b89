/** Build partitioned images with the real sfdisk and read its JSON view of them. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export function sfdiskWrite(file: string, sizeBytes: number, script: string): void {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, sizeBytes);
  execFileSync('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', file], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

export interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  attrs?: string;
  bootable?: boolean;
}

export interface SfdiskTable {
  label: 'gpt' | 'dos';
  id: string;
  firstlba?: number;
  lastlba?: number;
  sectorsize: number;
  partitions?: SfdiskPartition[];
}

export function sfdiskJson(file: string): SfdiskTable {
  return JSON.parse(execFileSync('sfdisk', ['--json', file], { encoding: 'utf8' })).partitiontable;
}

/** sfdisk names partitions FILE1, FILE2, ...: the trailing number is the index. */
export function nodeIndex(node: string): number {
  return Number(/(\d+)$/.exec(node)![1]);
}
