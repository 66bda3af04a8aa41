import { describe, expect, it } from 'vitest';
import { ManagedProcess } from './managed-process.js';

describe('ManagedProcess', () => {
  it('captures output and waits for a line that matches', async () => {
    const proc = ManagedProcess.spawn({
      name: 'echo',
      command: process.execPath,
      args: ['-e', 'console.log("ready on port 1234"); setInterval(() => {}, 1000)'],
    });
    try {
      const match = await proc.waitForOutput(/ready on port (\d+)/, { timeoutMs: 10_000 });
      expect(match[1]).toBe('1234');
    } finally {
      const exit = await proc.stop();
      expect(exit.signal).toBe('SIGTERM');
    }
  });

  it('kills a process that ignores SIGTERM once the grace period is over', async () => {
    const proc = ManagedProcess.spawn({
      name: 'stubborn',
      command: process.execPath,
      args: [
        '-e',
        'process.on("SIGTERM", () => {}); console.log("armed"); setInterval(() => {}, 1000)',
      ],
    });
    await proc.waitForOutput(/armed/, { timeoutMs: 10_000 });
    const exit = await proc.stop({ graceMs: 200 });
    expect(exit.signal).toBe('SIGKILL');
    expect(proc.isRunning).toBe(false);
  });

  it('rejects a wait for output when the process exits first, with its output attached', async () => {
    const proc = ManagedProcess.spawn({
      name: 'quitter',
      command: process.execPath,
      args: ['-e', 'console.error("cannot bind"); process.exit(3)'],
    });
    await expect(proc.waitForOutput(/listening/, { timeoutMs: 10_000 })).rejects.toThrow(
      /exited \(code 3\)[\s\S]*cannot bind/,
    );
  });
});
