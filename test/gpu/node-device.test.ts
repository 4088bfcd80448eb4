/**
 * throttleDawnTicks (src/gpu/node-device.ts): Dawn's Node binding ticks through the global
 * setImmediate with a native callback while it waits; those ticks go to a timer, every other
 * setImmediate stays as it was, and a wait for the GPU still ends.
 */
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { throttleDawnTicks } from '../../src/gpu/node-device';
import { testGpu } from '../helpers';

describe('throttleDawnTicks', () => {
  afterEach(() => vi.restoreAllMocks());

  it('puts native callbacks (Dawn\'s ticks) on a timer and leaves JavaScript callbacks immediate', async () => {
    await testGpu(); // installs it, as every Node device does
    throttleDawnTicks(); // and again: idempotent
    const timeout = vi.spyOn(globalThis, 'setTimeout');
    const native = Math.max;
    setImmediate(native);
    expect(timeout).toHaveBeenCalledWith(native, 0);
    timeout.mockClear();
    const ran = await new Promise<boolean>((resolve) => setImmediate(() => resolve(true)));
    expect(ran).toBe(true);
    expect(timeout).not.toHaveBeenCalled();
    await expect(promisify(setImmediate)('kept')).resolves.toBe('kept'); // util.promisify.custom survives
  });

  it('a wait for the GPU still ends', async () => {
    const gpu = await testGpu();
    gpu.device.queue.submit([gpu.device.createCommandEncoder().finish()]);
    await expect(gpu.device.queue.onSubmittedWorkDone()).resolves.toBeUndefined();
  });
});
