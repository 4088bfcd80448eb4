/**
 * A live preview of the masking: one sample of the chosen dataset at the model's resolution,
 * cut into the model's patches, the masked ones grey, with the count of visible patches.
 * The mask is MAE's random masking (src/core/masking) with fixed noise, so moving the slider
 * only adds or removes patches. Samples are loaded once per dataset, before any training.
 */
import { useEffect, useRef, useState } from 'react';
import { lenKeepFor, randomMasking } from '../../core/masking';
import { loadBuiltin } from '../../data/builtin';
import { sampleRGBA } from '../../data/dataset';
import { makeShapesDataset } from '../../data/procedural';
import { DatasetStore } from '../../data/store-idb';
import type { StudioConfig } from './config';

interface Sample {
  width: number;
  height: number;
  rgba: Uint8ClampedArray;
}

const cache = new Map<string, Promise<Sample | null>>();

/** One sample image of a dataset (MNIST: a digit; Shapes: generated; a stored one: its first thumbnail). */
function sampleOf(dataset: string, imgSize: number): Promise<Sample | null> {
  const key = dataset.startsWith('builtin:shapes') ? `${dataset}@${imgSize}` : dataset;
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      if (dataset === 'builtin:mnist') {
        const ds = await loadBuiltin('mnist', { baseUrl: import.meta.env.BASE_URL });
        return { width: ds.W, height: ds.H, rgba: sampleRGBA(ds, 7) };
      }
      if (dataset === 'builtin:shapes') {
        const ds = makeShapesDataset({ n: 4, size: imgSize, channels: 3 });
        return { width: ds.W, height: ds.H, rgba: sampleRGBA(ds, 1) };
      }
      const store = await DatasetStore.open();
      try {
        const info = (await store.list()).find((d) => `stored:${d.id}` === dataset);
        const t = info?.thumbnails[0];
        return t ? { width: t.width, height: t.height, rgba: t.rgba } : null;
      } finally {
        store.close();
      }
    })().catch(() => null);
    cache.set(key, p);
  }
  return p;
}

/** Fixed noise for the preview mask (a small LCG), so the mask is stable as the ratio moves. */
function previewNoise(L: number): Float32Array {
  const out = new Float32Array(L);
  let s = 12345;
  for (let i = 0; i < L; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216;
  }
  return out;
}

export function MaskPreview({ config, size = 168 }: { config: StudioConfig; size?: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [sample, setSample] = useState<Sample | null>(null);
  useEffect(() => {
    let live = true;
    void sampleOf(config.dataset, config.imgSize).then((s) => live && setSample(s));
    return () => void (live = false);
  }, [config.dataset, config.imgSize]);

  const g = config.patchSize > 0 && config.imgSize % config.patchSize === 0 ? config.imgSize / config.patchSize : 0;
  const L = g * g;
  const visible = L > 0 ? lenKeepFor(L, config.maskRatio) : 0;

  useEffect(() => {
    const ctx = canvas.current?.getContext('2d');
    if (!ctx) return;
    ctx.fillStyle = '#eef0f3';
    ctx.fillRect(0, 0, size, size);
    if (sample) {
      const img = document.createElement('canvas');
      img.width = sample.width;
      img.height = sample.height;
      img.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(sample.rgba), sample.width, sample.height), 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, size, size);
    }
    if (L === 0) return;
    const { mask } = randomMasking(previewNoise(L), 1, L, visible);
    const cell = size / g;
    ctx.fillStyle = '#9aa3ae';
    for (let l = 0; l < L; l++) {
      if (mask[l] === 1) ctx.fillRect(Math.floor((l % g) * cell), Math.floor(Math.floor(l / g) * cell), Math.ceil(cell), Math.ceil(cell));
    }
    ctx.strokeStyle = 'rgba(255,255,255,0.35)';
    ctx.lineWidth = 1;
    for (let i = 1; i < g; i++) {
      const x = Math.round(i * cell) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, size);
      ctx.moveTo(0, x);
      ctx.lineTo(size, x);
      ctx.stroke();
    }
  }, [sample, size, L, g, visible]);

  return (
    <figure className="mask-preview">
      <canvas ref={canvas} width={size} height={size} data-testid="mask-preview" data-visible={visible} data-patches={L} />
      <figcaption className="muted">{L > 0 ? `${visible} of ${L} patches visible` : 'the patch size does not divide the image'}</figcaption>
    </figure>
  );
}
