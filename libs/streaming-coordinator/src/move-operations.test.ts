import { describe, expect, it } from 'vitest';
import { MoveOperationRegistry } from './move-operations.js';

describe('MoveOperationRegistry', () => {
  it('advances an operation through its phases and stamps the finish time', () => {
    let now = 1_000;
    const registry = new MoveOperationRegistry(8, () => now);
    const { id } = registry.create('wal-0001', 2);
    expect(registry.get(id)).toMatchObject({ state: 'pending', term: null, finishedAtMs: null });
    now = 1_010;
    registry.advance(id, 'removing', { term: 4 });
    registry.advance(id, 'assigning', { term: 4 });
    now = 1_020;
    registry.advance(id, 'done');
    expect(registry.get(id)).toEqual({
      id,
      pchannel: 'wal-0001',
      targetNodeId: 2,
      state: 'done',
      term: 4,
      reason: null,
      createdAtMs: 1_000,
      updatedAtMs: 1_020,
      finishedAtMs: 1_020,
    });
  });

  it('keeps finished operations final and ignores phases that go backwards', () => {
    const registry = new MoveOperationRegistry(8);
    const { id } = registry.create('wal-0001', 2);
    registry.advance(id, 'assigning', { term: 3 });
    registry.advance(id, 'removing', { term: 3 });
    expect(registry.get(id)?.state).toBe('assigning');
    registry.advance(id, 'failed', { reason: 'node 2 lost' });
    registry.advance(id, 'done');
    expect(registry.get(id)).toMatchObject({ state: 'failed', reason: 'node 2 lost' });
  });

  it('forgets the oldest operations beyond its limit', () => {
    const registry = new MoveOperationRegistry(2);
    const ids = [0, 1, 2].map((i) => registry.create(`wal-000${i}`, 1).id);
    expect(registry.get(ids[0] ?? '')).toBeUndefined();
    expect(registry.get(ids[1] ?? '')).toBeDefined();
    expect(registry.get(ids[2] ?? '')).toBeDefined();
  });

  it('hands out copies, so callers cannot change what it keeps', () => {
    const registry = new MoveOperationRegistry(2);
    const { id } = registry.create('wal-0000', 1);
    const copy = registry.get(id);
    if (copy !== undefined) copy.state = 'done';
    expect(registry.get(id)?.state).toBe('pending');
  });
});
