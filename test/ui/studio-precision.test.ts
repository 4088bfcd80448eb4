/**
 * The studio's precision setting: f32 by default and left out of the URL; mixed in the URL
 * (`pr=mixed`), in the worker's request (and resolved by the engine), kept across presets; mixed
 * on an adapter without shader-f16 is a problem of the Precision field (Start stays off); the form
 * renders the control; a mixed run's live numbers read "loss scale … · N steps skipped".
 * (The control's disabled choice on SwiftShader: e2e/train.spec.ts.)
 */
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../../src/engine/trainer';
import type { StepRecord } from '../../src/protocol/train';
import { DEFAULT_CONFIG, allowsMixed, applyPreset, decodeConfig, encodeConfig, hasProblems, toTrainSpec, validateConfig, type StudioConfig } from '../../src/ui/studio/config';
import { ConfigurePanel } from '../../src/ui/studio/ConfigurePanel';
import { lossScaleText } from '../../src/ui/studio/RunPanel';

const mixed: StudioConfig = { ...DEFAULT_CONFIG, precision: 'mixed' };
const withF16 = ['shader-f16', 'timestamp-query'], withoutF16 = ['timestamp-query'];

describe('studio precision', () => {
  it('f32 by default, left out of the URL; mixed round-trips as pr=mixed; anything else reads as f32; a preset keeps it', () => {
    expect(DEFAULT_CONFIG.precision).toBe('f32');
    expect(encodeConfig(DEFAULT_CONFIG)).toBe('p=tiny');
    expect(encodeConfig(mixed)).toBe('p=tiny&pr=mixed');
    expect(decodeConfig('p=tiny&pr=mixed')).toEqual(mixed);
    expect(decodeConfig('p=tiny&pr=f8')!.precision).toBe('f32');
    expect(applyPreset('vit-tiny', mixed).precision).toBe('mixed');
    expect(applyPreset('vit-tiny', DEFAULT_CONFIG).precision).toBe('f32');
  });

  it('the worker is asked for mixed only when chosen; the engine resolves both', () => {
    expect(toTrainSpec(mixed).precision).toBe('mixed');
    expect(resolveTrainConfig(toTrainSpec(mixed)).precision).toBe('mixed');
    expect(toTrainSpec(DEFAULT_CONFIG)).not.toHaveProperty('precision');
    expect(resolveTrainConfig(toTrainSpec(DEFAULT_CONFIG)).precision).toBe('f32');
    // A form kept by an older studio has no precision: f32.
    const { precision: _, ...old } = DEFAULT_CONFIG;
    expect(toTrainSpec(old as StudioConfig)).not.toHaveProperty('precision');
    expect(validateConfig(old as StudioConfig, null, withoutF16)).toEqual({});
  });

  it('mixed without shader-f16 is the Precision field\'s problem; with it, or before the adapter is known, none', () => {
    expect(allowsMixed(withF16)).toBe(true);
    expect(allowsMixed(withoutF16)).toBe(false);
    expect(allowsMixed(null)).toBeNull();
    const p = validateConfig(mixed, null, withoutF16);
    expect(p.precision).toEqual(['this adapter has no shader-f16, which mixed precision needs: choose f32']);
    expect(hasProblems(p)).toBe(true);
    expect(validateConfig(mixed, null, withF16)).toEqual({});
    expect(validateConfig(mixed, null, null)).toEqual({});
    expect(validateConfig(DEFAULT_CONFIG, null, withoutF16)).toEqual({});
  });

  it('the form has the Precision control: f32 and "mixed (f16 matmuls, loss scaling)", f32 chosen', () => {
    const html = renderToStaticMarkup(createElement(ConfigurePanel, { datasetName: 'MNIST' }));
    const select = html.match(/<select[^>]*data-testid="cfg-precision"[^>]*>.*?<\/select>/)?.[0];
    expect(select).toBeDefined();
    expect(select).toContain('<option value="f32" selected="">f32</option>');
    expect(select).toMatch(/<option value="mixed"[^>]*>mixed \(f16 matmuls, loss scaling\)<\/option>/);
    expect(html).toContain('>Precision</label>');
  });

  it('a mixed run\'s live numbers: the loss scale and the steps skipped so far; none for f32', () => {
    const r: StepRecord = { step: 3, epoch: 0, loss: 1, pix: 1, lr: 1e-3, gradNorm: 1, imagesPerSec: 1, elapsedMs: 1 };
    expect(lossScaleText(r)).toBeNull();
    expect(lossScaleText({ ...r, lossScale: 65536, skipped: false, skippedSteps: 0 })).toBe('loss scale 65536 · 0 steps skipped');
    expect(lossScaleText({ ...r, lossScale: 32768, skipped: true, skippedSteps: 1 })).toBe('loss scale 32768 · 1 step skipped');
  });
});
