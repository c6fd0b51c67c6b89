/** Shape of bench/results/*.json (every number measured in the run that wrote it). */
import type { CaDelivery, CaIndexCheck } from './casync.js';
import type { LoadSample, MachineInfo } from './measure.js';
import type { VmdnDelivery, VmdnDisk } from './vmdn-store.js';

export interface Step {
  cmd: string;
  ok: boolean;
  seconds: number;
  maxRssBytes: number;
  exitCode: number;
  cachesDropped: boolean;
  /** export steps: how long a `sync` run right after the step took */
  syncSeconds?: number;
  error?: string;
}

export interface ImportStats {
  allocated: number;
  dataBytes: number;
  chunks: number;
  distinctChunks: number;
  newObjects: number;
  newBytes: number;
  newStoredBytes: number;
}

export interface Throughput {
  /** MB/s of the 3 GiB virtual size */
  virtualMBps: number;
  /** MB/s of the allocated data */
  allocatedMBps: number;
}

export interface ImageResult {
  name: string;
  virtualSize: number;
  qcow2FileBytes: number;
  casyncMake: Step & { storeBytesAfter: number; indexBytes: number; throughput: Throughput };
  vmdnImportRaw: Step & { storeBytesAfter: number; stats?: ImportStats; throughput: Throughput };
  vmdnImportQcow2: Step & { storeBytesAfter: number; storedBytesAfter: number; stats?: ImportStats; throughput: Throughput };
  /** casync make time / vmdn import time, both reading NAME.raw */
  importRatioRaw: number;
  /** casync make time (raw) / vmdn import time (qcow2) */
  importRatioQcow2: number;
  caibx?: CaIndexCheck;
  export?: {
    vmdn: Step & { bytesWritten?: number };
    casync: Step;
    qemuImg: Step;
    /** vmdn export time / qemu-img convert time */
    ratioQemuImg: number;
    /** vmdn export time / casync extract time */
    ratioCasync: number;
    /** (vmdn export + sync) / (qemu-img convert + sync): time until the output is on disk */
    ratioQemuImgDurable: number;
    identical: boolean | null;
    compare: string;
  };
}

export interface StoreSizes {
  vmdn: { images: number; objects: number; objectBytes: number; storedBytes: number; logicalBytes: number; disk: VmdnDisk };
  vmdnRaw?: { objects: number; storedBytes: number; disk: VmdnDisk };
  casync: { chunkFiles: number; chunkBytes: number; indexBytes: number; total: number; diskBytes: number; compression: string };
}

export interface DeliveryCase {
  target: string;
  held: string[];
  vmdn?: VmdnDelivery;
  casync?: CaDelivery;
  /** MB a target must fetch with casync, the project's reference figure */
  referenceCasyncMB?: number;
}

export interface ChunkerRun {
  spec: string;
  isDefault: boolean;
  status: 'ok' | 'skipped' | 'failed' | 'timed out';
  reason?: string;
  importSeconds?: number;
  perImageSeconds?: Record<string, number>;
  maxRssBytes?: number;
  objects?: number;
  storedBytes?: number;
  diskTotal?: number;
  delivery?: { target: string; total: number }[];
  deliveryTotal?: number;
  wallSeconds?: number;
}

export interface Target {
  target: string;
  measured: string;
  threshold: string;
  met: boolean | null;
}

export interface BenchResults {
  kind: 'vmdn.bench';
  version: 1;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  load: { start: LoadSample; end: LoadSample };
  settings: {
    images: string[];
    chunkers: string[];
    defaultChunker: string;
    budgetMinutes: number;
    corpusDir: string;
    workDir: string;
    cachesDropped: boolean;
  };
  images: ImageResult[];
  stores?: StoreSizes;
  delivery: DeliveryCase[];
  chunkers: ChunkerRun[];
  targets: Target[];
  maxVmdnRssBytes: number;
  maxVmdnRssCommand: string;
  problems: string[];
}
