/** An in-memory Disk over a byte buffer (the one in src/, for tests). */
export { MemDisk } from '../../src/container/mem-disk.js';
