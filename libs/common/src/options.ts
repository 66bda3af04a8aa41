/**
 * An option's value with its default applied, checked to be an integer in `[min, max]`.
 * Throws RangeError naming the option: a bad option is the caller's bug, found at construction.
 */
export function intOption(
  name: string,
  value: number | undefined,
  def: number,
  min: number,
  max: number,
): number {
  const v = value ?? def;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${v}`);
  }
  return v;
}
