/**
 * The pictures of an evaluation as plain geometry, apart from React and the DOM so that Node
 * tests them: the confusion matrix as a heatmap (each row coloured by its own share, so a small
 * class is as readable as a large one; the count in the cell and in its hover title) and the
 * per-class accuracy as horizontal bars. src/ui/watch/EvaluationView.tsx draws them as SVG.
 */
import { colormap } from './heatmap';

export interface ConfusionCell {
  /** True class (row) and predicted class (column). */
  row: number;
  col: number;
  count: number;
  /** count / the row's total (0 for an empty row). */
  share: number;
  fill: string;
  /** Dark text on light cells, light on dark. */
  text: string;
  title: string;
}

export interface ConfusionLayout {
  K: number;
  /** Cell side and the margins that hold the class names (left: true class; top: predicted). */
  cell: number;
  left: number;
  top: number;
  width: number;
  height: number;
  cells: ConfusionCell[];
  /** Counts are written in the cells when they fit. */
  showCounts: boolean;
  /** Names on the top axis are turned 90° when they would not fit across a cell. */
  rotateTop: boolean;
  total: number;
}

const rgb = (c: [number, number, number]) => `rgb(${c[0]},${c[1]},${c[2]})`;
/** Relative luminance of an sRGB colour, roughly (for the text colour over it). */
const light = (c: [number, number, number]) => 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] > 140;

/** Characters the longest name needs, capped (longer names are cut with an ellipsis). */
export const NAME_CHARS = 14;
export const shortName = (s: string): string => (s.length > NAME_CHARS ? `${s.slice(0, NAME_CHARS - 1)}…` : s);

/**
 * The layout of a K×K confusion matrix (confusion[true][predicted]) in about `size` pixels:
 * cells of at least 6 px, names of the classes on both axes.
 */
export function confusionLayout(confusion: readonly (readonly number[])[], classNames: readonly string[], size = 360): ConfusionLayout {
  const K = confusion.length;
  const names = Array.from({ length: K }, (_, k) => shortName(classNames[k] ?? String(k)));
  const chars = Math.max(1, ...names.map((n) => n.length));
  const cell = Math.max(6, Math.min(44, Math.floor(size / Math.max(1, K))));
  const nameWidth = Math.ceil(chars * 6.5) + 8;
  const rotateTop = chars * 6.5 > cell - 2;
  const left = nameWidth;
  const top = rotateTop ? nameWidth : 18;
  const cells: ConfusionCell[] = [];
  let total = 0;
  for (let i = 0; i < K; i++) {
    const rowTotal = confusion[i].reduce((a, b) => a + b, 0);
    total += rowTotal;
    for (let j = 0; j < K; j++) {
      const count = confusion[i][j];
      const share = rowTotal > 0 ? count / rowTotal : 0;
      const c = colormap(share);
      cells.push({
        row: i, col: j, count, share, fill: rgb(c), text: light(c) ? '#111' : '#fff',
        title: `true ${classNames[i] ?? i}, predicted ${classNames[j] ?? j}: ${count} image${count === 1 ? '' : 's'}` +
          (rowTotal > 0 ? ` (${(100 * share).toFixed(1)} % of ${classNames[i] ?? i})` : ''),
      });
    }
  }
  const maxDigits = Math.max(1, ...cells.map((c) => String(c.count).length));
  return { K, cell, left, top, width: left + K * cell + 2, height: top + K * cell + 2, cells, showCounts: cell >= 7 * maxDigits + 4 && cell >= 14, rotateTop, total };
}

export interface ClassBar {
  index: number;
  name: string;
  count: number;
  /** null: no validation image of this class. */
  accuracy: number | null;
  /** Bar length in pixels (0 for null). */
  length: number;
  fill: string;
  label: string;
}

export interface BarsLayout {
  rowHeight: number;
  left: number;
  barWidth: number;
  width: number;
  height: number;
  bars: ClassBar[];
}

/** Horizontal bars of per-class accuracy, the class names on the left, the percentage after each bar. */
export function perClassBars(perClass: readonly { index: number; name: string; count: number; accuracy: number | null }[], barWidth = 220): BarsLayout {
  const rowHeight = perClass.length > 30 ? 10 : 18;
  const chars = Math.max(1, ...perClass.map((c) => shortName(c.name).length));
  const left = Math.ceil(chars * 6.5) + 8;
  const bars = perClass.map((c) => ({
    index: c.index, name: c.name, count: c.count, accuracy: c.accuracy,
    length: c.accuracy === null ? 0 : Math.round(c.accuracy * barWidth),
    fill: c.accuracy === null ? '#999' : rgb(colormap(0.15 + 0.7 * c.accuracy)),
    label: c.accuracy === null ? 'no images' : `${(100 * c.accuracy).toFixed(1)} % of ${c.count}`,
  }));
  return { rowHeight, left, barWidth, width: left + barWidth + 90, height: perClass.length * rowHeight + 4, bars };
}

/** "73.4 %". */
export const percent = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)} %`;
