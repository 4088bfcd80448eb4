/**
 * The Watch components rendered to HTML in Node (react-dom/server: no effects, no canvas): the
 * reconstruction grid's column labels, step, loss and non-blank flag; the teacher panel's proposed
 * teacher; the attention view before any run. (Drawing and live updates: the e2e tests.)
 */
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { gridColumnLevels } from '../../src/engine/visualize';
import { RECONSTRUCTION_COLUMNS } from '../../src/protocol/train';
import { AttentionView } from '../../src/ui/watch/AttentionView';
import { ReconstructionView } from '../../src/ui/watch/ReconstructionView';
import { TeacherPanel } from '../../src/ui/watch/TeacherPanel';

function grid(textured: boolean) {
  const cell = 8, gap = 2, rows = 2, width = 4 * cell + 5 * gap, height = rows * cell + 3 * gap;
  const data = new Uint8ClampedArray(width * height * 4).fill(32);
  if (textured) for (let i = 0; i < data.length; i += 4) data[i] = (i / 4) % 251;
  const levels = gridColumnLevels({ data, width }, 4, { rows, columns: 4, cell, gap });
  return { step: 40, width, height, data, rows, columns: RECONSTRUCTION_COLUMNS, cell, gap, levels, val: { pix: 0.25, loss: 0.3 } };
}

describe('Watch components as HTML', () => {
  it('ReconstructionView: labelled columns, the step, the validation loss, the non-blank flag', () => {
    const html = renderToStaticMarkup(createElement(ReconstructionView, { view: grid(true) }));
    for (const c of RECONSTRUCTION_COLUMNS) expect(html).toContain(`>${c}<`);
    expect(html).toContain('data-step="40"');
    expect(html).toContain('data-nonblank="true"');
    expect(html).toContain('0.3000');
    expect(html).toContain('(pixel 0.2500)');
    expect(renderToStaticMarkup(createElement(ReconstructionView, { view: grid(false) }))).toContain('data-nonblank="false"');
    expect(renderToStaticMarkup(createElement(ReconstructionView, { view: null }))).toContain('appear here when a run starts');
  });

  it('TeacherPanel: the proposed teacher from the form (2× wide, ≥ 4 blocks); none chosen yet', () => {
    // (Server rendering reads the stores' initial state: the chosen-teacher lines are checked end to end.)
    const html = renderToStaticMarkup(createElement(TeacherPanel));
    expect(html).toContain('data-teacher=""');
    expect(html).toContain('No teacher chosen.');
    expect(html).toContain('Train a teacher (64-wide, 4 blocks)');
    expect(html).toContain('no ended MAE run with weights');
  });

  it('AttentionView before any run', () => {
    const html = renderToStaticMarkup(createElement(AttentionView));
    expect(html).toContain('data-status="idle"');
    expect(html).toContain('appear once a run has started');
  });
});
