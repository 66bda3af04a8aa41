import { StreamingError } from './errors.js';

/** Longest accepted channel (pchannel or vchannel) name. */
export const MAX_CHANNEL_NAME_LENGTH = 128;
const CHANNEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Validates a vchannel or pchannel name; throws INVALID_ARGUMENT. Channel names double as WAL log names. */
export function validateChannelName(name: unknown, what = 'channel'): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_CHANNEL_NAME_LENGTH ||
    !CHANNEL_NAME.test(name)
  ) {
    throw new StreamingError(
      'INVALID_ARGUMENT',
      `invalid ${what} name ${JSON.stringify(name)}: use 1-${MAX_CHANNEL_NAME_LENGTH} characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  return name;
}

/** Name of pchannel `index` in a cluster whose pchannels start with `prefix`. */
export function pchannelName(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(4, '0')}`;
}

/** FNV-1a, 32 bit, of the UTF-8 bytes of `text`: stable across processes, versions and platforms. */
export function fnv1a32(text: string): number {
  // Every append routes through this: ASCII names (the usual case) are hashed from their
  // character codes, which are their UTF-8 bytes, without encoding them into a buffer first.
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return fnv1a32Bytes(Buffer.from(text, 'utf8'));
    hash = Math.imul(hash ^ code, 0x01000193);
  }
  return hash >>> 0;
}

function fnv1a32Bytes(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

/**
 * The pchannel a vchannel lives on: FNV-1a of its name modulo the pchannel count. The count is
 * fixed at cluster creation, so the mapping never changes for the cluster's lifetime.
 */
export function pchannelForVChannel(vchannel: string, pchannels: readonly string[]): string {
  if (pchannels.length === 0)
    throw new StreamingError('CHANNEL_NOT_EXIST', 'the cluster has no pchannels yet');
  return pchannels[fnv1a32(vchannel) % pchannels.length] as string;
}
