/**
 * What every filesystem reader (ext2/3/4, FAT) offers: read-only, from a Disk,
 * never touching the host filesystem. Names and paths from an image are data:
 * byte strings decoded for display, never resolved on the host.
 */
import type { Disk } from '../container/disk.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface FsNode {
  /** Inode number (FAT: a synthetic stable id). */
  ino: number;
  type: NodeType;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777). */
  perm: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  crtime?: Timestamp;
  /** Device numbers for chardev/blockdev. */
  rdev?: { major: number; minor: number };
}

export interface DirEntry {
  /** Raw name bytes (ext4 names need not be UTF-8). */
  nameBytes: Uint8Array;
  /** Decoded name for display and paths (UTF-8, invalid bytes replaced). */
  name: string;
  ino: number;
  type: NodeType;
}

/** A run of a file's data on the filesystem's device: file offset -> device offset. */
export interface FileExtent {
  fileOffset: number;
  deviceOffset: number;
  length: number;
}

export interface FsInfo {
  type: 'ext2' | 'ext3' | 'ext4' | 'vfat';
  uuid: string;
  label: string;
  blockSize: number;
  totalBytes: number;
  usedBytes: number;
  /** Reader-specific details (features, inode size, hash seed, FAT type, ...). */
  details: Record<string, unknown>;
}

export interface FileSystem {
  readonly info: FsInfo;
  /** Checksum mismatches and other non-fatal findings, collected while reading. */
  readonly warnings: string[];
  root(): Promise<FsNode>;
  stat(ino: number): Promise<FsNode>;
  readdir(dir: FsNode): Promise<DirEntry[]>;
  /** Whole-path lookup from the root; '/'-separated, no '..' resolution across the root. */
  lookup(path: string): Promise<FsNode>;
  /** File content as a stream of blocks; sparse regions read as zeros. */
  readFile(node: FsNode, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  readlink(node: FsNode): Promise<string>;
  xattrs(node: FsNode): Promise<Map<string, Uint8Array>>;
  /** Where a regular file's data lives on the device (for file-aware chunking). */
  fileExtents(node: FsNode): Promise<FileExtent[]>;
  /** Allocated (used) byte ranges of the device, [start, end), ascending. */
  usedRanges(): Promise<Array<[number, number]>>;
}

/** Opens a filesystem on a disk (usually a partition slice); undefined if the magic does not match. */
export type FsProbe = (disk: Disk) => Promise<FileSystem | undefined>;
