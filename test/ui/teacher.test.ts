/** The teacher panel's arithmetic: the proposed teacher is larger with the same head size and geometry; the parameter count matches the engine's table. */
import { describe, expect, it } from 'vitest';
import { ArenaLayout } from '../../src/gpu/buffers';
import { addEncoderParams } from '../../src/engine/params';
import type { ModelSpec } from '../../src/protocol/train';
import { alignmentText, describeTeacher, encoderParamCount, teacherModelFor } from '../../src/ui/watch/teacher';

const tiny: ModelSpec = { imgSize: 28, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true };

describe('teacher', () => {
  it('teacherModelFor: twice the width and heads, at least 4 blocks, same geometry and decoder', () => {
    expect(teacherModelFor(tiny)).toEqual({ ...tiny, embedDim: 64, numHeads: 4, depth: 4 });
    const vitTiny = { ...tiny, imgSize: 224, patchSize: 16, inChans: 3, embedDim: 192, depth: 12, numHeads: 3 };
    expect(teacherModelFor(vitTiny)).toMatchObject({ embedDim: 384, numHeads: 6, depth: 12, imgSize: 224 }); // ViT-Small
  });

  it('encoderParamCount equals the engine table without the fixed position table', () => {
    for (const m of [tiny, teacherModelFor(tiny), { ...tiny, imgSize: 224, patchSize: 16, inChans: 3, embedDim: 192, depth: 12, numHeads: 3 }]) {
      const layout = new ArenaLayout();
      addEncoderParams(layout, m);
      const total = layout.entries.filter((e) => e.name !== 'pos_embed').reduce((s, e) => s + e.length, 0);
      expect(encoderParamCount(m)).toBe(total);
    }
    // ViT-Tiny's encoder: about 5.5 M.
    expect(encoderParamCount({ ...tiny, patchSize: 16, inChans: 3, embedDim: 192, depth: 12 })).toBeGreaterThan(5.4e6);
  });

  it('describes the teacher and the aligned blocks', () => {
    expect(describeTeacher(teacherModelFor(tiny))).toBe('64-wide, 4 blocks, 4 heads · 28×28×1 in 4-px patches · 201.2 k encoder parameters');
    expect(alignmentText(1, 2, 4)).toBe('Aligned: student block kS = 1 → teacher block kT = 2 of 0..3; the teacher runs blocks 0..2 only');
    expect(alignmentText(1, 4, 4)).toMatch(/out of range: the teacher has blocks 0\.\.3/);
  });
});
