/**
 * The static shader check (tier 1 of `npm test`): every WGSL file with entry points is composed
 * the way the kernel registry composes it, compiled by Tint, and turned into a compute pipeline
 * for each of its `@compute` entry points — with no GPU and no driver, on Dawn's null backend.
 *
 *   npm run shaders:check              # checks shaders/
 *   npm run shaders:check -- some/dir  # checks another folder laid out like shaders/
 *
 * The device is opened with WebGPU's default limits, which are the project's kernel rules
 * (≤ 256 invocations per workgroup, ≤ 16 KiB of workgroup memory, ≤ 8 storage buffers per entry
 * point), so a kernel that breaks one fails here; it has the optional features a kernel may
 * `enable` (subgroups, shader-f16), as openDevice asks for them. Override constants keep their
 * defaults; one without a default fails the pipeline, which is what we want (wrappers may omit it).
 * Files that declare no entry point (shaders/common/*) are libraries: checked through the
 * shaders that import them. Prints one line per file; on an error, `file:line:col`, the line
 * and a caret, and exits 1.
 */
import { resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { create, globals } from 'webgpu';
import { composeShader, formatCompileErrors, type ShaderSources } from '../src/gpu/kernels';
import { loadShaderSourcesFromDisk, SHADER_DIR } from '../src/gpu/shader-sources-disk';
import { findNodeAdapter } from '../src/gpu/node-device';

type Composed = ReturnType<typeof composeShader>;

/** WGSL with comments blanked out (same length and line breaks), so commented-out code is not parsed. */
function stripComments(code: string): string {
  return code
    .replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, (m) => ' '.repeat(m.length));
}

/** The `@compute` entry points of a WGSL text, with the 1-based line and column of each name. */
function computeEntryPoints(code: string): Array<{ name: string; line: number; col: number }> {
  const text = stripComments(code);
  // Attributes may span lines (`@compute @workgroup_size(16, 16)\nfn name(`); they hold no braces or semicolons.
  const re = /@compute\b[^;{}]*?\bfn\s+([A-Za-z_]\w*)/g;
  const out: Array<{ name: string; line: number; col: number }> = [];
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const at = m.index + m[0].length - m[1].length;
    const before = text.slice(0, at);
    const line = before.split('\n').length;
    out.push({ name: m[1], line, col: at - before.lastIndexOf('\n') });
  }
  return out;
}

/** A location in the composed shader as a synthetic compile message, for formatCompileErrors. */
function messageAt(lineNum: number, linePos: number, message: string): GPUCompilationMessage {
  return { type: 'error', lineNum, linePos, message, offset: 0, length: 0 } as unknown as GPUCompilationMessage;
}

async function openDevice(): Promise<{ device: GPUDevice; backend: string }> {
  Object.assign(globalThis, globals);
  const gpu = create(['backend=null']);
  (globalThis as { __keepDawnAlive?: unknown }).__keepDawnAlive = gpu; // collecting it crashes the process
  const adapter = await gpu.requestAdapter();
  // The optional features kernels may `enable` (openDevice asks for them when the adapter has them).
  const features = (['subgroups', 'shader-f16'] as GPUFeatureName[]).filter((f) => adapter?.features.has(f));
  if (adapter) return { device: await adapter.requestDevice({ requiredFeatures: features }), backend: "Dawn's null backend" };
  // The null backend compiles and builds pipelines in the `webgpu` package we pin; should a
  // build ever lack it, any real adapter Node can reach does the same job, only slower.
  const real = await findNodeAdapter();
  const realFeatures = (['subgroups', 'shader-f16'] as GPUFeatureName[]).filter((f) => real.features.has(f));
  return { device: await real.requestDevice({ requiredFeatures: realFeatures }), backend: `${real.info.description || real.info.vendor} (no null backend)` };
}

async function checkFile(device: GPUDevice, name: string, sources: ShaderSources): Promise<{ ok: boolean; line: string; errors: string }> {
  const label = `shaders/${name}.wgsl`;
  let composed: Composed;
  try {
    composed = composeShader(name, sources);
  } catch (e) {
    return { ok: false, line: `FAIL ${label}`, errors: (e as Error).message };
  }
  const entries = computeEntryPoints(composed.code);
  device.pushErrorScope('validation'); // the module's own error is reported below, not printed by Dawn
  const module = device.createShaderModule({ label: name, code: composed.code });
  const info = await module.getCompilationInfo();
  await device.popErrorScope();
  if (info.messages.some((m) => m.type === 'error')) {
    return { ok: false, line: `FAIL ${label}: does not compile`, errors: formatCompileErrors(composed, info.messages) };
  }
  const warnings = info.messages
    .filter((m) => m.type === 'warning')
    .map((m) => formatCompileErrors(composed, [messageAt(m.lineNum, m.linePos, `warning: ${m.message}`)]));

  const failures: string[] = [];
  for (const entry of entries) {
    device.pushErrorScope('validation');
    const pipeline = await device
      .createComputePipelineAsync({ label: `${name}:${entry.name}`, layout: 'auto', compute: { module, entryPoint: entry.name } })
      .catch((e: Error) => e);
    const scoped = await device.popErrorScope();
    const err = pipeline instanceof Error ? pipeline : scoped;
    if (err) {
      const why = err.message.split('\n')[0].trim();
      failures.push(formatCompileErrors(composed, [messageAt(entry.line, entry.col, `entry point ${entry.name}: ${why}`)]));
    }
  }
  const names = entries.map((e) => e.name).join(', ');
  const warn = warnings.length ? `, ${warnings.length} warning(s)` : '';
  if (failures.length) {
    return { ok: false, line: `FAIL ${label}: ${failures.length} of ${entries.length} entry point(s) cannot build a pipeline`, errors: [...failures, ...warnings].join('\n') };
  }
  return { ok: true, line: `ok   ${label}: ${entries.length} entry point(s) (${names})${warn}`, errors: warnings.join('\n') };
}

async function main(): Promise<number> {
  const dir = process.argv[2] ? resolve(process.argv[2]) : SHADER_DIR;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    console.error(`check-shaders: ${dir} is not a folder`);
    return 1;
  }
  const sources = loadShaderSourcesFromDisk(dir);
  const names = Object.keys(sources).sort();
  const { device, backend } = await openDevice();
  console.log(`Checking ${names.length} WGSL file(s) in ${dir} with Tint on ${backend}`);

  // Which files import which: a library is reported with its importers (or as unused).
  const importers = new Map<string, string[]>();
  for (const n of names) {
    for (const m of sources[n].matchAll(/^\s*\/\/\s*#import\s+([\w/.-]+)\s*$/gm)) {
      importers.set(m[1], [...(importers.get(m[1]) ?? []), n]);
    }
  }

  let failed = 0;
  let kernels = 0;
  for (const name of names) {
    if (computeEntryPoints(sources[name]).length === 0) {
      const by = importers.get(name);
      console.log(`lib  shaders/${name}.wgsl: no entry points; ${by ? `checked through ${by.join(', ')}` : 'imported by no shader (unchecked)'}`);
      continue;
    }
    const r = await checkFile(device, name, sources);
    kernels += r.ok ? 1 : 0;
    console.log(r.line);
    if (r.errors) console.log(r.errors.replace(/^/gm, '     '));
    if (!r.ok) failed++;
  }
  device.destroy();
  if (failed) {
    console.log(`shaders:check: ${failed} file(s) failed, ${kernels} passed`);
    return 1;
  }
  if (kernels === 0) {
    console.log('shaders:check: no WGSL file with a @compute entry point found');
    return 1;
  }
  console.log(`shaders:check: all ${kernels} shader file(s) compile and build every entry point`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : e);
    process.exit(1);
  },
);
