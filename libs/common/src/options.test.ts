import { describe, expect, it } from 'vitest';
import { intOption } from './options.js';

describe('intOption', () => {
  it('applies the default and accepts the bounds', () => {
    expect(intOption('x', undefined, 5, 1, 10)).toBe(5);
    expect(intOption('x', 1, 5, 1, 10)).toBe(1);
    expect(intOption('x', 10, 5, 1, 10)).toBe(10);
  });

  it('rejects values out of range and non-integers with the option name', () => {
    expect(() => intOption('maxThings', 11, 5, 1, 10)).toThrow(
      new RangeError('maxThings must be an integer in [1, 10], got 11'),
    );
    expect(() => intOption('maxThings', 1.5, 5, 1, 10)).toThrow(RangeError);
    expect(() => intOption('maxThings', Number.NaN, 5, 1, 10)).toThrow(RangeError);
  });
});
