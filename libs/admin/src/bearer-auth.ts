import { createHash, timingSafeEqual } from 'node:crypto';
import { HttpApiError } from './http-errors.js';

/** What a route does: reads are open unless `protectReads`; writes need the token when one is set. */
export type RouteAccess = 'read' | 'write';

/** Checks `Authorization: Bearer <token>` headers against the configured admin token. */
export class BearerAuth {
  private readonly expectedDigest: Buffer | undefined;

  /**
   * Throws RangeError for an empty token (anyone could send it) and for `protectReads`
   * without a token (there would be nothing to check).
   */
  constructor(
    token: string | undefined,
    private readonly protectReads: boolean,
  ) {
    if (token === '') throw new RangeError('admin.token must not be empty');
    if (protectReads && token === undefined) {
      throw new RangeError('admin.protectReads needs admin.token');
    }
    this.expectedDigest = token === undefined ? undefined : digest(token);
  }

  /** Whether routes of this kind need the token (for the OpenAPI security field). */
  isRequired(access: RouteAccess): boolean {
    return this.expectedDigest !== undefined && (access === 'write' || this.protectReads);
  }

  /** Throws UNAUTHORIZED (no or malformed header) or FORBIDDEN (another token). */
  check(access: RouteAccess, header: string | undefined): void {
    const expected = this.expectedDigest;
    if (expected === undefined || !this.isRequired(access)) return;
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    if (match === null) {
      throw new HttpApiError(
        'UNAUTHORIZED',
        'this call needs the admin token: send the header "Authorization: Bearer <token>"',
      );
    }
    // Digests have one length whatever was sent, so the comparison takes constant time and
    // does not reveal the token's length either.
    if (!timingSafeEqual(digest(match[1] as string), expected)) {
      throw new HttpApiError('FORBIDDEN', 'the admin token is wrong');
    }
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
