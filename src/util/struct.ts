/**
 * Binary layouts described once, as data: a list of big- or little-endian
 * fields at fixed offsets. `defineStruct` checks the description when the
 * module loads (no overlaps, fits the declared size), and the same object
 * then parses and writes, so reader and writer cannot drift apart.
 */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | `bytes:${number}`;

export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
}

function fieldSize(t: FieldType): number {
  switch (t) {
    case 'u8': return 1;
    case 'u16': return 2;
    case 'u32': return 4;
    case 'u64': return 8;
    default: {
      const n = Number(t.slice(6));
      if (!Number.isInteger(n) || n <= 0) throw new Error(`bad field type ${t}`);
      return n;
    }
  }
}

export type StructValues<F extends readonly FieldSpec[]> = {
  [K in F[number] as K['name']]: K['type'] extends `bytes:${number}` ? Uint8Array : K['type'] extends 'u64' ? bigint : number;
};

export interface Struct<F extends readonly FieldSpec[]> {
  readonly size: number;
  readonly fields: F;
  parse(buf: Uint8Array, at?: number): StructValues<F>;
  write(values: Partial<StructValues<F>>, buf?: Uint8Array, at?: number): Uint8Array;
}

export function defineStruct<const F extends readonly FieldSpec[]>(
  name: string,
  size: number,
  endian: 'be' | 'le',
  fields: F,
): Struct<F> {
  // Load-time checks: fields sorted, non-overlapping, within `size`.
  let end = 0;
  const seen = new Set<string>();
  for (const f of fields) {
    const s = fieldSize(f.type);
    if (f.offset < end) throw new Error(`${name}.${f.name}: overlaps previous field`);
    if (f.offset + s > size) throw new Error(`${name}.${f.name}: exceeds struct size ${size}`);
    if (seen.has(f.name)) throw new Error(`${name}.${f.name}: duplicate field`);
    seen.add(f.name);
    end = f.offset + s;
  }
  const le = endian === 'le';
  return {
    size,
    fields,
    parse(buf, at = 0) {
      if (at < 0 || at + size > buf.length) throw new RangeError(`${name}: need ${size} bytes at ${at}, have ${buf.length}`);
      const dv = new DataView(buf.buffer, buf.byteOffset + at, size);
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        switch (f.type) {
          case 'u8': out[f.name] = dv.getUint8(f.offset); break;
          case 'u16': out[f.name] = dv.getUint16(f.offset, le); break;
          case 'u32': out[f.name] = dv.getUint32(f.offset, le); break;
          case 'u64': out[f.name] = dv.getBigUint64(f.offset, le); break;
          default: out[f.name] = buf.slice(at + f.offset, at + f.offset + fieldSize(f.type));
        }
      }
      return out as StructValues<F>;
    },
    write(values, buf = new Uint8Array(size), at = 0) {
      const dv = new DataView(buf.buffer, buf.byteOffset + at, size);
      const v = values as Record<string, unknown>;
      for (const f of fields) {
        const x = v[f.name];
        if (x === undefined) continue;
        switch (f.type) {
          case 'u8': dv.setUint8(f.offset, x as number); break;
          case 'u16': dv.setUint16(f.offset, x as number, le); break;
          case 'u32': dv.setUint32(f.offset, x as number, le); break;
          case 'u64': dv.setBigUint64(f.offset, BigInt(x as bigint | number), le); break;
          default: {
            const bytes = x as Uint8Array;
            if (bytes.length !== fieldSize(f.type)) throw new RangeError(`${name}.${f.name}: expected ${fieldSize(f.type)} bytes`);
            buf.set(bytes, at + f.offset);
          }
        }
      }
      return buf;
    },
  };
}
