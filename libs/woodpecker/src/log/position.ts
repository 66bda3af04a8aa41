/**
 * A position in a log: entry `entryId` of segment `segmentId`. Positions are ordered by
 * (segmentId, entryId). Entry ids are dense per segment, starting at 0.
 */
export interface LogPosition {
  readonly segmentId: number;
  readonly entryId: number;
}

/** Negative when a < b, 0 when equal, positive when a > b. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.segmentId !== b.segmentId ? a.segmentId - b.segmentId : a.entryId - b.entryId;
}

export function formatPosition(p: LogPosition): string {
  return `${p.segmentId}:${p.entryId}`;
}
