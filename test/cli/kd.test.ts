/**
 * The `kd` command end to end at a tiny size: a teacher fine-tuned by `evaluate --method
 * finetune --save`, a student distilled from it, the files it writes, the student file read back
 * (readFinetuned, `evaluate --method head`, and as a DMAE teacher), and the refusals.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODEL_FILE } from '../../src/cli/checkpoints';
import { FINETUNED_FILE, evaluateCommand } from '../../src/cli/evaluate';
import { kdCommand, readFinetuned } from '../../src/cli/kd';
import { readTeacher } from '../../src/cli/teacher';
import { finetuneParamLayout, initFinetuneParams } from '../../src/engine/classifier';
import { maeConfig } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { maeParamLayout } from '../../src/engine/params';
import { exportFull } from '../../src/io/export';
import { FINETUNED_METADATA_KEY } from '../../src/io/finetuned';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { quiet } from '../helpers';

describe('npm run dmae -- kd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-kd-'));
  const cfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 16, depth: 2, numHeads: 2 });
  writeFileSync(join(dir, MODEL_FILE), exportFull({ mode: 'mae', config: cfg, step: 3 }, initParams(maeParamLayout(cfg), 2, 1)).file);
  const teacherDir = join(dir, 'ft'), out = join(dir, 'kd');

  it('a fine-tuned teacher (evaluate --save) is read back by readFinetuned with its classes and every tensor', { timeout: 120_000 }, async () => {
    expect(await quiet(() => evaluateCommand([dir, '--method', 'finetune', '--data', 'procedural', '--steps', '3', '--batch', '16', '--out', join(dir, 'ft.json'), '--save', teacherDir]))).toBe(0);
    const ft = readFinetuned(teacherDir);
    expect(ft.file).toBe(join(teacherDir, FINETUNED_FILE));
    expect(ft.numClasses).toBe(7);
    expect(ft.classNames).toEqual(['circle', 'square', 'triangle', 'ring', 'cross', 'stripes', 'checker']);
    expect(ft.config).toMatchObject({ imgSize: 8, patchSize: 4, inChans: 1, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 4 });
    expect([...ft.params.keys()].sort()).toEqual(finetuneParamLayout(cfg, 7).entries.map((e) => e.name).sort());
    const st = readSafetensors(new Uint8Array(readFileSync(ft.file)));
    expect(Array.from(ft.params.get('head.weight')!)).toEqual(Array.from(new Float32Array(st.tensors.get('head.weight')!.bytes.slice().buffer)));
  });

  it('distils a student: model.safetensors, eval-kd.json (student and teacher accuracy), config.json; the student file round-trips', { timeout: 120_000 }, async () => {
    const lines: string[] = [];
    const args = ['--teacher', join(teacherDir, FINETUNED_FILE), '--data', 'procedural', '--embed-dim', '8', '--depth', '1', '--heads', '2', '--patch', '2',
      '--steps', '4', '--batch', '16', '--temperature', '2', '--soft-weight', '0.7', '--out', out];
    expect(await quiet(() => kdCommand(args), (l) => lines.push(l))).toBe(0);
    for (const f of [MODEL_FILE, 'eval-kd.json', 'config.json']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(lines.some((l) => /^step 4\/4 .*teacher/.test(l))).toBe(true);

    const r = JSON.parse(readFileSync(join(out, 'eval-kd.json'), 'utf8'));
    expect(r.method).toBe('kd');
    expect(r.count).toBe(200);
    expect(r.confusion).toHaveLength(7);
    expect(r.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(200);
    expect(r.confusion.reduce((s: number, row: number[], k: number) => s + row[k], 0) / 200).toBeCloseTo(r.accuracy, 12);
    expect(r.perClass).toHaveLength(7);
    expect(r.kd).toEqual({ temperature: 2, softWeight: 0.7, labelSmoothing: 0.1 });
    expect(r.options).toMatchObject({ steps: 4, batch: 16, temperature: 2, softWeight: 0.7, layerDecay: 1, preset: 'test' });
    expect(r.model).toEqual({ imgSize: 8, patchSize: 2, inChans: 1, embedDim: 8, depth: 1, numHeads: 2, mlpRatio: 4 });
    expect(r.teacher.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.teacher.accuracy).toBeLessThanOrEqual(1);
    expect(r.teacher.count).toBe(200);
    expect(r.teacher.model.embedDim).toBe(16);
    expect(r.trainLog.length).toBeGreaterThan(0);
    expect(r.command).toBe(`dmae kd ${args.join(' ')}`);
    const c = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(c).toMatchObject({ command: `dmae kd ${args.join(' ')}`, mode: 'kd', temperature: 2, softWeight: 0.7, student: { embedDim: 8, depth: 1, patchSize: 2 } });

    // The student file: the same form as finetuned.safetensors, read by the same reader…
    const s = readFinetuned(join(out, MODEL_FILE));
    expect(s.numClasses).toBe(7);
    expect(s.config).toMatchObject({ imgSize: 8, patchSize: 2, inChans: 1, embedDim: 8, depth: 1, numHeads: 2 });
    expect(s.params.has('norm.weight')).toBe(false);
    expect(JSON.parse(readSafetensors(new Uint8Array(readFileSync(join(out, MODEL_FILE)))).metadata[FINETUNED_METADATA_KEY]).method).toBe('kd');
    // …and evaluated as it is (evaluate --method head) gives exactly the accuracy kd reported.
    const headOut = join(dir, 'head.json');
    expect(await quiet(() => evaluateCommand([join(out, MODEL_FILE), '--method', 'head', '--batch', '16', '--out', headOut]))).toBe(0);
    const h = JSON.parse(readFileSync(headOut, 'utf8'));
    expect(h.method).toBe('head');
    expect(h.data.name).toBe(r.data.name); // the dataset recorded in the student's metadata
    expect(h.confusion).toEqual(r.confusion);
    expect(h.accuracy).toBe(r.accuracy);
    // The teacher file evaluated as it is gives the teacher accuracy kd reported.
    expect(await quiet(() => evaluateCommand([teacherDir, '--method', 'head', '--data', 'procedural', '--batch', '16', '--out', headOut]))).toBe(0);
    expect(JSON.parse(readFileSync(headOut, 'utf8')).accuracy).toBe(r.teacher.accuracy);
  });

  it('a fine-tuned classifier is a DMAE teacher: its blocks, a stand-in final norm, and a note that says so', () => {
    for (const path of [teacherDir, join(teacherDir, FINETUNED_FILE)]) {
      const t = readTeacher(path);
      const ft = readFinetuned(teacherDir);
      expect(t.config).toMatchObject({ embedDim: 16, depth: 2, numHeads: 2, patchSize: 4, imgSize: 8 });
      expect(Array.from(t.params.get('norm.weight')!)).toEqual(new Array(16).fill(1));
      expect(Array.from(t.params.get('norm.bias')!)).toEqual(new Array(16).fill(0));
      expect(t.params.has('head.weight') || t.params.has('fc_norm.weight')).toBe(false);
      expect(t.params.get('blocks.1.mlp.fc2.weight')).toEqual(ft.params.get('blocks.1.mlp.fc2.weight'));
      expect(t.notes.join(' ')).toMatch(/final norm is absent/);
    }
    // A pretrained encoder is still read as before.
    expect(readTeacher(dir).notes.join(' ')).not.toMatch(/final norm is absent/);
  });

  it('reads a timm-style fine-tuned ViT too: a module. prefix, no metadata (heads by the head-dim-64 rule), an extra encoder norm ignored', () => {
    const wide = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 3 }, { embedDim: 64, depth: 1, numHeads: 1 });
    const p = initFinetuneParams(wide, 5, null, 2);
    const tensors = finetuneParamLayout(wide, 5).entries.map((e) => ({ name: `module.${e.name}`, shape: e.shape, data: p.get(e.name)! }));
    tensors.push({ name: 'module.norm.weight', shape: [64], data: new Float64Array(64).fill(1) }, { name: 'module.norm.bias', shape: [64], data: new Float64Array(64) });
    const file = join(dir, 'timm-ft.safetensors');
    writeFileSync(file, writeSafetensors(tensors));
    const ft = readFinetuned(file);
    expect(ft.numClasses).toBe(5);
    expect(ft.classNames).toBeNull();
    expect(ft.config).toMatchObject({ embedDim: 64, depth: 1, numHeads: 1, inChans: 3 });
    expect(ft.params.get('head.bias')).toEqual(p.get('head.bias'));
    expect(ft.notes.join(' ')).toMatch(/prefix "module\."/);
    expect(ft.notes.join(' ')).toMatch(/also holds an encoder `norm`/);
  });

  it('refuses a missing teacher, a pretrained encoder as teacher, another class count and impossible sizes, with messages', { timeout: 120_000 }, async () => {
    await expect(kdCommand(['--data', 'procedural'])).rejects.toThrow(/needs --teacher PATH/);
    await expect(kdCommand(['--teacher', join(dir, 'nothing')])).rejects.toThrow(/no such file or folder/);
    await expect(kdCommand(['--teacher', join(dir, MODEL_FILE)])).rejects.toThrow(/not a fine-tuned classifier.*no head\.weight.*fine-tune it first/);
    // A 3-class classifier against the 7 shapes.
    const three = join(dir, 'three');
    mkdirSync(three);
    const p = initFinetuneParams(cfg, 3, null, 1);
    const tensors = finetuneParamLayout(cfg, 3).entries.map((e) => ({ name: e.name, shape: e.shape, data: p.get(e.name)! }));
    writeFileSync(join(three, FINETUNED_FILE), writeSafetensors(tensors, { [FINETUNED_METADATA_KEY]: JSON.stringify({ config: cfg }) }));
    await expect(quiet(() => kdCommand(['--teacher', three, '--data', 'procedural', '--steps', '1']))).rejects.toThrow(/classifies 3 classes; Shapes .* has 7/);
    await expect(quiet(() => kdCommand(['--teacher', teacherDir, '--data', 'procedural', '--embed-dim', '8', '--heads', '3']))).rejects.toThrow(/student cannot be built: .*not divisible by 3 heads/);
    await expect(quiet(() => kdCommand(['--teacher', teacherDir, '--data', 'procedural', '--patch', '3']))).rejects.toThrow(/student cannot be built: .*not a multiple of patch size 3/);
    await expect(quiet(() => kdCommand(['--teacher', teacherDir, '--soft-weight', '1.5']))).rejects.toThrow(/soft weight 1.5 must lie in \[0, 1\]/);
  });
});
