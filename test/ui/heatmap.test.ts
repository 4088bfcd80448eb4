/**
 * Attention and reconstruction pictures as bytes: the colour map's ends and monotone brightness,
 * the cls overlay (hottest patch, masked patches darkened, blending), the row-scaled matrix, the
 * row-sum check, and the "non-blank" measure of a reconstruction grid's columns.
 */
import { describe, expect, it } from 'vitest';
import { gridColumnLevels } from '../../src/engine/visualize';
import { clsOverlay, colormap, isNonBlank, matrixImage, rowSumError } from '../../src/ui/watch/heatmap';

const luma = ([r, g, b]: number[]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;

describe('colormap', () => {
  it('viridis ends, clamped, NaN lowest, brightness rising with t', () => {
    expect(colormap(0)).toEqual([68, 1, 84]);
    expect(colormap(1)).toEqual([253, 231, 37]);
    expect(colormap(-3)).toEqual(colormap(0));
    expect(colormap(7)).toEqual(colormap(1));
    expect(colormap(NaN)).toEqual(colormap(0));
    let prev = -1;
    for (let i = 0; i <= 50; i++) {
      const l = luma(colormap(i / 50));
      expect(l).toBeGreaterThan(prev);
      prev = l;
    }
  });
});

describe('clsOverlay', () => {
  const size = 4, grid = 2; // 2×2 patches of 2×2 pixels
  const image = new Uint8ClampedArray(size * size * 4).fill(100);
  it('the hottest patch takes the top colour (alpha 1); a masked patch keeps the image, darkened; opaque', () => {
    const cls = [0.1, 0.6, 0.3, 0];
    const present = [true, true, true, false];
    const out = clsOverlay(image, size, cls, grid, present, 1);
    const px = (x: number, y: number) => [...out.slice(4 * (y * size + x), 4 * (y * size + x) + 4)];
    expect(px(2, 0).slice(0, 3)).toEqual(colormap(1)); // patch 1 (top right) = max
    expect(px(3, 1).slice(0, 3)).toEqual(colormap(1));
    expect(px(0, 0).slice(0, 3)).toEqual(colormap(0.1 / 0.6));
    expect(px(0, 2).slice(0, 3)).toEqual(colormap(0.5));
    expect(px(3, 3).slice(0, 3)).toEqual([35, 35, 35]); // masked: 100 · 0.35
    for (let i = 3; i < out.length; i += 4) expect(out[i]).toBe(255);
  });
  it('blends with the image by alpha', () => {
    const out = clsOverlay(image, size, [1, 1, 1, 1], grid, [true, true, true, true], 0.5);
    const top = colormap(1);
    expect([...out.slice(0, 3)]).toEqual(top.map((c) => Math.round(0.5 * 100 + 0.5 * c)));
  });
});

describe('matrixImage and rowSumError', () => {
  it('each row scaled by its own maximum', () => {
    const m = [0.5, 0.5, 0, 0.1, 0.9, 0, 1, 0, 0];
    const img = matrixImage(m, 3);
    const at = (i: number, j: number) => [...img.slice(4 * (i * 3 + j), 4 * (i * 3 + j) + 3)];
    expect(at(0, 0)).toEqual(colormap(1));
    expect(at(0, 1)).toEqual(colormap(1));
    expect(at(1, 1)).toEqual(colormap(1));
    expect(at(1, 0)).toEqual(colormap(0.1 / 0.9));
    expect(at(2, 2)).toEqual(colormap(0));
    expect(rowSumError(m, 3)).toBeCloseTo(0, 12);
    expect(rowSumError([0.5, 0.4, 0.2, 0.8], 2)).toBeCloseTo(0.1, 12);
  });
});

describe('reconstruction grid levels (non-blank check)', () => {
  it('counts distinct levels per column; a flat column is blank, a textured one is not', () => {
    const cell = 4, gap = 1, rows = 2, cols = 4;
    const width = cols * cell + (cols + 1) * gap, height = rows * cell + (rows + 1) * gap;
    const data = new Uint8ClampedArray(width * height * 4).fill(32);
    for (let r = 0; r < rows; r++)
      for (let y = 0; y < cell; y++)
        for (let x = 0; x < cell; x++) {
          const yy = gap + r * (cell + gap) + y;
          // columns 0 and 2: gradients (32 distinct levels over both rows); 1 and 3 flat
          for (const col of [0, 2]) data[4 * (yy * width + gap + col * (cell + gap) + x)] = 7 * (r * 16 + y * cell + x) + col;
          data[4 * (yy * width + gap + 1 * (cell + gap) + x)] = 128;
        }
    const levels = gridColumnLevels({ data, width }, 4, { rows, columns: 4, cell, gap });
    expect(levels).toEqual([32, 1, 32, 1]);
    expect(isNonBlank(levels[0])).toBe(true);
    expect(isNonBlank(levels[1])).toBe(false);
  });
});
