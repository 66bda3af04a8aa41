import { StreamingError } from '@woodstream/streaming';
import { describe, expect, it } from 'vitest';
import { HttpApiError, toHttpApiError } from './http-errors.js';

describe('toHttpApiError', () => {
  it('maps coordinator codes through one table', () => {
    const cases: [StreamingError['code'], string, number, boolean][] = [
      ['CHANNEL_NOT_EXIST', 'CHANNEL_NOT_FOUND', 404, false],
      ['INVALID_ARGUMENT', 'REJECTED', 409, false],
      ['IGNORED_OPERATION', 'CONFLICT', 409, true],
      ['ON_SHUTDOWN', 'UNAVAILABLE', 503, true],
      ['RESOURCE_EXHAUSTED', 'BUSY', 503, true],
      ['INNER', 'INTERNAL', 500, false],
      ['UNRECOVERABLE', 'INTERNAL', 500, false],
      ['UNAVAILABLE', 'UNAVAILABLE', 503, true],
    ];
    for (const [from, code, status, retryable] of cases) {
      const mapped = toHttpApiError(new StreamingError(from, 'why'));
      expect({ code: mapped.code, status: mapped.status, retryable: mapped.retryable }).toEqual({
        code,
        status,
        retryable,
      });
      expect(mapped.toBody()).toEqual({ code, message: 'why', retryable });
    }
  });

  it('fails closed on unknown errors and reports time limits as TIMEOUT', () => {
    expect(toHttpApiError(new TypeError('x is undefined')).toBody()).toEqual({
      code: 'INTERNAL',
      message: 'x is undefined',
      retryable: false,
    });
    expect(toHttpApiError(new DOMException('timed out', 'TimeoutError'))).toMatchObject({
      code: 'TIMEOUT',
      status: 504,
      retryable: true,
    });
  });

  it('keeps the leader id of NOT_LEADER in the body, null when unknown', () => {
    expect(new HttpApiError('NOT_LEADER', 'standby', { leaderId: null }).toBody()).toEqual({
      code: 'NOT_LEADER',
      message: 'standby',
      retryable: true,
      leaderId: null,
    });
  });
});
