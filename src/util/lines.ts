/**
 * Lines of a byte stream (LF, a CR before it dropped), each at most `max`
 * bytes: readline would buffer a hostile single line without end.
 */
import { VmdnError } from '../errors.js';

export async function* boundedLines(input: AsyncIterable<Uint8Array | string>, max: number, what: string): AsyncGenerator<string> {
  let carry = '';
  const dec = new TextDecoder();
  for await (const piece of input) {
    const text = carry + (typeof piece === 'string' ? piece : dec.decode(piece, { stream: true }));
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      if (nl - start > max) break;
      yield text.slice(start, nl > start && text[nl - 1] === '\r' ? nl - 1 : nl);
      start = nl + 1;
    }
    carry = text.slice(start);
    if (carry.length > max) throw new VmdnError('E_FORMAT', `${what}: a line longer than ${max} bytes`, { max });
  }
  if (carry) yield carry.endsWith('\r') ? carry.slice(0, -1) : carry;
}
