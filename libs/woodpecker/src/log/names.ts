import { InvalidNameError } from '../errors.js';

/** Longest accepted log name, in characters. */
export const MAX_LOG_NAME_LENGTH = 128;
const LOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Log names are 1–128 characters of ASCII letters, digits, `.`, `_` and `-`, starting with a
 * letter or digit. They become metadata key segments, so `/` and control characters are out.
 * Throws InvalidNameError.
 */
export function validateLogName(name: unknown): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_LOG_NAME_LENGTH ||
    !LOG_NAME.test(name)
  ) {
    throw new InvalidNameError(
      `invalid log name ${JSON.stringify(name)}: use 1-${MAX_LOG_NAME_LENGTH} characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  return name;
}
