/**
 * The runtime around the kernels: adapter choice, limits, device loss and recovery, compile
 * errors with the WGSL line, pipeline and bind-group caching, overlap refusal, timing, arenas.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { acquireNodeGpu, findNodeAdapter, SWIFTSHADER_ICD } from '../../src/gpu/node-device';
import { GpuError, openDevice } from '../../src/gpu/device';
import { Arena, ArenaLayout } from '../../src/gpu/buffers';
import { KernelRegistry, Recorder, composeShader, dispatchCache } from '../../src/gpu/kernels';
import { GpuTimer } from '../../src/gpu/timing';
import { loadShaderSourcesFromDisk } from '../../src/gpu/shader-sources-disk';
import { matmul } from '../../src/gpu/ops/matmul';
import * as ref from '../../src/ref/matmul';
import { TOL, expectClose, gpuTensor, randn, read, run, testGpu } from '../helpers';

const BROKEN = {
  'common/helper': 'fn helper(x: f32) -> f32 {\n  return x * 2.0;\n}\nfn oops() -> f32 {\n  let y: f32 = 1u;\n  return y;\n}',
  bad: '// #import common/helper\n@group(0) @binding(1) var<storage, read_write> a: array<f32>;\n@compute @workgroup_size(1)\nfn main() {\n  a[0] = helper(oops());\n}',
};

describe('adapter and device', () => {
  it('finds an adapter and says which kind it is', async () => {
    const gpu = await testGpu();
    expect(['hardware', 'lavapipe', 'swiftshader', 'software']).toContain(gpu.adapter.kind);
    expect(gpu.adapter.description.length).toBeGreaterThan(3);
    expect(gpu.adapter.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
  });

  it.runIf(existsSync(SWIFTSHADER_ICD))('can be forced onto SwiftShader with DMAE_ADAPTER', async () => {
    process.env.DMAE_ADAPTER = 'swiftshader';
    try {
      const adapter = await findNodeAdapter();
      expect(adapter.info.description.toLowerCase() + adapter.info.vendor.toLowerCase()).toContain('swiftshader');
    } finally {
      delete process.env.DMAE_ADAPTER;
    }
  });

  it('refuses limits the adapter cannot give, naming the limit', async () => {
    const adapter = await findNodeAdapter();
    const huge = adapter.limits.maxStorageBufferBindingSize * 2;
    const err = await openDevice(adapter, {}, { maxStorageBufferBindingSize: huge }).catch((e) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect(err.code).toBe('limits');
    expect(err.message).toContain(`maxStorageBufferBindingSize: needs ${huge}`);
    expect(err.message).toMatch(/smaller model/);
  });

  it('grants the limits it asked for', async () => {
    const adapter = await findNodeAdapter();
    const want = Math.min(adapter.limits.maxStorageBufferBindingSize, 256 * 2 ** 20);
    const gpu = await openDevice(adapter, {}, { maxStorageBufferBindingSize: want });
    expect(gpu.device.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(want);
    gpu.destroy();
  });

  it('reports device loss, and a new device carries on', async () => {
    const first = await acquireNodeGpu();
    first.destroy();
    const loss = await first.lost;
    expect(loss.reason).toBe('destroyed');

    const second = await acquireNodeGpu();
    const a = randn(6 * 5, 1), b = randn(5 * 7, 2), want = new Float64Array(42);
    ref.matmul(want, a, b, null, 6, 7, 5);
    const c = gpuTensor(second, 42);
    await run(second, (rec) => matmul(rec, c, gpuTensor(second, a), gpuTensor(second, b), null, 6, 7, 5));
    expectClose(await read(second, c), want, TOL.reduction, 'matmul after recovery');
    second.destroy();
  });
});

describe('kernel registry', () => {
  it('reports a compile error with the file and line it came from, and a caret', async () => {
    const gpu = await testGpu();
    const registry = new KernelRegistry(gpu.device, BROKEN);
    const err = await registry.compile({ shader: 'bad', entry: 'main' }).catch((e) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect(err.code).toBe('shader');
    // Line 5 of the imported file, not of the composed text.
    expect(err.message).toMatch(/shaders\/common\/helper\.wgsl:5:\d+/);
    expect(err.message).toContain('let y: f32 = 1u;');
    expect(err.message).toMatch(/\n\s+\^/);
  });

  it('names a missing import', () => {
    const registry = new KernelRegistry({} as GPUDevice, { a: '// #import common/nope\n' });
    expect(() => registry.pipeline({ shader: 'a', entry: 'main' })).toThrow(/imports "common\/nope"/);
  });

  it('surfaces a compile error when a recorder that used the kernel is submitted', async () => {
    const gpu = await acquireNodeGpu();
    const broken = new (gpu.kernels.constructor as typeof KernelRegistry)(gpu.device, BROKEN);
    (gpu as { kernels: KernelRegistry }).kernels = broken;
    const rec = new Recorder(gpu);
    rec.dispatch({ shader: 'bad', entry: 'main' }, [gpuTensor(gpu, 4)], null, [1]);
    const err = await rec.submit().catch((e) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect(err.message).toMatch(/helper\.wgsl:5/);
    gpu.takeUncapturedErrors(); // the invalid pipeline's validation errors, expected here
    gpu.destroy();
  });

  it('caches pipelines by (shader, entry, constants) and bind groups by bindings', async () => {
    const gpu = await testGpu();
    const a = gpuTensor(gpu, randn(64, 3)), b = gpuTensor(gpu, randn(64, 4)), c = gpuTensor(gpu, 64);
    const step = (rec: Recorder) => {
      matmul(rec, c, a, b, null, 8, 8, 8, 'nn');
      matmul(rec, c, a, b, null, 8, 8, 8, 'nt');
    };
    await run(gpu, step);
    const pipelines = gpu.kernels.pipelineCount;
    const groups = dispatchCache(gpu.device).bindGroupCount;
    const staging = dispatchCache(gpu.device).takeStaging();
    dispatchCache(gpu.device).returnStaging(staging);
    await run(gpu, step);
    await run(gpu, step);
    expect(gpu.kernels.pipelineCount).toBe(pipelines);
    // The uniform staging memory is lent, not allocated, per step.
    const again = dispatchCache(gpu.device).takeStaging();
    expect(again).toBe(staging);
    dispatchCache(gpu.device).returnStaging(again);
    expect(dispatchCache(gpu.device).bindGroupCount).toBe(groups);
    await run(gpu, (rec) => matmul(rec, c, a, b, null, 8, 8, 8, 'tn'));
    expect(gpu.kernels.pipelineCount).toBe(pipelines + 1);
    expect(KernelRegistry.key({ shader: 's', entry: 'e', constants: { B: 1, A: 2 } })).toBe('s:e:A=2,B=1');
  });

  it('refuses overlapping bindings (an output must not alias an input)', async () => {
    const gpu = await testGpu();
    const layout = new ArenaLayout();
    layout.add('x', [8, 8]);
    const arena = new Arena(gpu.device, layout, 'overlap-test');
    const x = arena.tensor('x');
    const rec = new Recorder(gpu);
    expect(() => matmul(rec, x, x, gpuTensor(gpu, 64), null, 8, 8, 8)).toThrow(/bindings 1 and 2 overlap/);
    arena.destroy();
  });

  it('every shader in shaders/ composes (imports resolve)', () => {
    const sources = loadShaderSourcesFromDisk();
    expect(Object.keys(sources)).toContain('matmul');
    for (const name of Object.keys(sources)) {
      const composed = composeShader(name, sources);
      expect(composed.code).not.toMatch(/^\s*\/\/\s*#import\s+\S+\s*$/m);
      expect(composed.origin.length).toBe(composed.code.split('\n').length);
    }
  });
});

describe('timing', () => {
  it('times each labelled pass with timestamp queries where the adapter has them', async () => {
    const gpu = await testGpu();
    if (!gpu.hasTimestamps) return expect(GpuTimer.available(gpu.device)).toBe(false);
    const timer = new GpuTimer(gpu.device, 8);
    const a = gpuTensor(gpu, randn(128 * 128, 5)), b = gpuTensor(gpu, randn(128 * 128, 6)), c = gpuTensor(gpu, 128 * 128);
    const rec = new Recorder(gpu, timer);
    matmul(rec, c, a, b, null, 128, 128, 128, 'nn', false, 'tiled');
    rec.dispatch({ shader: 'matmul', entry: 'bias_backward', constants: { ACCUMULATE: 0 } }, [c, a], [128, 128, 0, 0], [2], 'sum rows');
    await rec.submit();
    const times = await timer.read();
    expect([...times.keys()].sort()).toEqual(['matmul:matmul_tiled', 'sum rows']);
    for (const ns of times.values()) expect(ns).toBeGreaterThan(0);
    timer.destroy();
  });

  it("times a whole submission under the recorder's label, its dispatches sharing one pass as without a timer", async () => {
    const gpu = await testGpu();
    if (!gpu.hasTimestamps) return;
    const timer = new GpuTimer(gpu.device, 8);
    const a = gpuTensor(gpu, randn(128 * 128, 5)), b = gpuTensor(gpu, randn(128 * 128, 6));
    const record = (rec: Recorder, c: ReturnType<typeof gpuTensor>) => {
      matmul(rec, c, a, b, null, 128, 128, 128, 'nn', false, 'tiled');
      rec.dispatch({ shader: 'matmul', entry: 'bias_backward', constants: { ACCUMULATE: 0 } }, [c, a], [128, 128, 0, 0], [2], 'sum rows');
    };
    const [cPlain, cTimed] = [gpuTensor(gpu, 128 * 128), gpuTensor(gpu, 128 * 128)];
    const plain = new Recorder(gpu);
    record(plain, cPlain);
    await plain.submit();
    const untimed = new Recorder(gpu, undefined, 'untimed', 'submission');
    expect(untimed.timedSpans).toBe(1); // what a timer would receive
    untimed.discard();
    const whole = new Recorder(gpu, timer, 'the step', 'submission');
    record(whole, cTimed);
    await whole.submit();
    expect([whole.dispatchCount, whole.timedSpans, whole.passCount]).toEqual([2, 1, plain.passCount + 2]); // + the two timestamp passes
    const times = await timer.read();
    expect([...times.keys()]).toEqual(['the step']);
    expect(times.get('the step')).toBeGreaterThan(0);
    expect(await read(gpu, cTimed)).toEqual(await read(gpu, cPlain));
    timer.destroy();
  });
});

describe('copies into textures', () => {
  it('copyToTextures lays a tensor out flat, row by row (whole rows, then the partial last one), times the copies under their label, and refuses a short source', async () => {
    const gpu = await testGpu();
    const texels = 100; // a 16-wide texture: six whole rows and four texels of the seventh
    const data = randn(4 * texels + 8, 7);
    const src = gpuTensor(gpu, data);
    const texture = gpu.device.createTexture({ size: [16, 8], format: 'rgba32float', usage: GPUTextureUsage.COPY_DST | GPUTextureUsage.COPY_SRC });
    const timer = gpu.hasTimestamps ? new GpuTimer(gpu.device, 4) : undefined;
    const rec = new Recorder(gpu, timer);
    rec.copyToTextures('upload', [{ src, dst: texture, texels }]);
    expect([rec.dispatchCount, rec.timedSpans]).toEqual([0, 1]);
    const readback = gpu.device.createBuffer({ size: 16 * 16 * 8, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    rec.encoder.copyTextureToBuffer({ texture }, { buffer: readback, bytesPerRow: 256 }, [16, 7]);
    await rec.submit();
    await readback.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(readback.getMappedRange().slice(0, 4 * 4 * texels));
    readback.unmap();
    expect(got).toEqual(Float32Array.from(data.subarray(0, 4 * texels)));
    if (timer) {
      const times = await timer.read();
      expect([...times.keys()]).toEqual(['upload']);
      timer.destroy();
    }
    const refused = new Recorder(gpu);
    expect(() => refused.copyToTextures('upload', [{ src: gpuTensor(gpu, 4 * texels - 1), dst: texture, texels }])).toThrow(/100 texels need 400 elements; the source holds 399/);
    expect(() => refused.copyToTextures('upload', [{ src: gpuTensor(gpu, 4 * 129), dst: texture, texels: 129 }])).toThrow(/129 texels do not fit a 16 × 8 texture/);
    expect([refused.passCount, refused.timedSpans]).toEqual([0, 0]); // nothing recorded
    refused.discard();
    texture.destroy();
  });
});

describe('arenas', () => {
  it('lays tensors out at 256-byte boundaries under their names', () => {
    const layout = new ArenaLayout();
    const a = layout.add('blocks.0.attn.qkv.weight', [576, 192]);
    const b = layout.add('blocks.0.attn.qkv.bias', [576]);
    const c = layout.add('cls_token', [1, 1, 192]);
    expect(a.start).toBe(0);
    expect(b.start).toBe(576 * 192);
    expect(c.start % 64).toBe(0);
    expect(c.start).toBeGreaterThanOrEqual(b.start + 576);
    expect(layout.get('cls_token').shape).toEqual([1, 1, 192]);
    expect(() => layout.add('cls_token', [1])).toThrow(/declared twice/);
    expect(() => layout.get('nope')).toThrow(/no tensor "nope"/);
  });

  it('refuses an arena larger than the device can bind, with the sizes', async () => {
    const gpu = await testGpu();
    const layout = new ArenaLayout();
    layout.add('huge', [gpu.device.limits.maxStorageBufferBindingSize / 4 + 1024]);
    expect(() => new Arena(gpu.device, layout, 'parameters')).toThrow(/parameters arena needs .* MiB/);
  });
});
