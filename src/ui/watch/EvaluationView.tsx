/**
 * An evaluation's result as pictures: the overall accuracy, the per-class accuracy as bars and
 * the confusion matrix as a heatmap (true class down, predicted class across, each row coloured
 * by its own share; counts in the cells when they fit and in every cell's hover title). SVG, so
 * it scales and its text is selectable; the geometry is eval-pictures.ts's.
 *
 * For end-to-end tests: [data-testid=evaluation-result] data-method, data-accuracy, data-count,
 * data-step; [data-testid=eval-accuracy]; [data-testid=eval-per-class] data-classes;
 * [data-testid=confusion-matrix] data-classes, data-total, one [data-testid=confusion-cell] per
 * cell with data-row, data-col, data-count.
 */
import type { EvaluationResultSpec } from '../../protocol/train';
import { confusionLayout, percent, perClassBars, shortName } from './eval-pictures';

const METHOD_LABEL: Record<EvaluationResultSpec['method'], string> = { knn: 'k-NN', linprobe: 'linear probe', finetune: 'fine-tuning' };

export const methodLabel = (m: EvaluationResultSpec['method']): string => METHOD_LABEL[m] ?? m;

export function ConfusionMatrix({ confusion, classNames }: { confusion: number[][]; classNames: string[] }) {
  const g = confusionLayout(confusion, classNames);
  const font = Math.max(8, Math.min(12, g.cell * 0.42));
  return (
    <svg className="confusion" data-testid="confusion-matrix" data-classes={g.K} data-total={g.total} width={g.width} height={g.height + 14}
      viewBox={`0 0 ${g.width} ${g.height + 14}`} role="img" aria-label={`Confusion matrix of ${g.K} classes, ${g.total} images: true class down, predicted class across`}>
      <text x={g.left + (g.K * g.cell) / 2} y={g.height + 12} textAnchor="middle" className="axis-title">predicted →</text>
      {classNames.map((name, k) => (
        <text key={`r${k}`} x={g.left - 5} y={g.top + (k + 0.5) * g.cell} textAnchor="end" dominantBaseline="central" className="axis-name">{shortName(name)}</text>
      ))}
      {classNames.map((name, k) => {
        const x = g.left + (k + 0.5) * g.cell;
        return g.rotateTop
          ? <text key={`c${k}`} x={x} y={g.top - 5} transform={`rotate(-90 ${x} ${g.top - 5})`} dominantBaseline="central" className="axis-name">{shortName(name)}</text>
          : <text key={`c${k}`} x={x} y={g.top - 5} textAnchor="middle" className="axis-name">{shortName(name)}</text>;
      })}
      {g.cells.map((c) => (
        <g key={`${c.row},${c.col}`} data-testid="confusion-cell" data-row={c.row} data-col={c.col} data-count={c.count}>
          <title>{c.title}</title>
          <rect x={g.left + c.col * g.cell} y={g.top + c.row * g.cell} width={g.cell - 1} height={g.cell - 1} fill={c.fill} className={c.row === c.col ? 'diag' : undefined} />
          {g.showCounts && c.count > 0 && (
            <text x={g.left + (c.col + 0.5) * g.cell} y={g.top + (c.row + 0.5) * g.cell} textAnchor="middle" dominantBaseline="central" fill={c.text} fontSize={font}>{c.count}</text>
          )}
        </g>
      ))}
    </svg>
  );
}

export function PerClassBars({ perClass }: { perClass: EvaluationResultSpec['perClass'] }) {
  const g = perClassBars(perClass);
  return (
    <svg className="per-class" data-testid="eval-per-class" data-classes={perClass.length} width={g.width} height={g.height} viewBox={`0 0 ${g.width} ${g.height}`}
      role="img" aria-label="Accuracy of each class">
      {g.bars.map((b, i) => {
        const y = 2 + i * g.rowHeight, h = g.rowHeight - 3;
        return (
          <g key={b.index} data-testid="eval-class-bar" data-class={b.index} data-accuracy={b.accuracy ?? ''}>
            <title>{`${b.name}: ${b.label}`}</title>
            <text x={g.left - 5} y={y + h / 2} textAnchor="end" dominantBaseline="central" className="axis-name">{shortName(b.name)}</text>
            <rect x={g.left} y={y} width={g.barWidth} height={h} className="bar-track" />
            <rect x={g.left} y={y} width={b.length} height={h} fill={b.fill} />
            {g.rowHeight >= 14 && <text x={g.left + g.barWidth + 5} y={y + h / 2} dominantBaseline="central" className="bar-label">{b.label}</text>}
          </g>
        );
      })}
    </svg>
  );
}

/** The whole result: the headline, the bars and the matrix side by side (wrapping on a narrow page). */
export function EvaluationView({ result }: { result: EvaluationResultSpec }) {
  const worst = result.perClass.filter((c) => c.accuracy !== null).sort((a, b) => a.accuracy! - b.accuracy!)[0];
  const chance = 1 / Math.max(1, result.perClass.filter((c) => c.count > 0).length);
  return (
    <div className="evaluation" data-testid="evaluation-result" data-method={result.method} data-accuracy={result.accuracy} data-count={result.count} data-step={result.step}>
      <p className="eval-headline">
        <span className="eval-accuracy" data-testid="eval-accuracy">{percent(result.accuracy)}</span>{' '}
        <span className="muted">
          {methodLabel(result.method)} accuracy on {result.count.toLocaleString('en')} validation images of {result.data.name} (weights of step {result.step};
          {result.method === 'knn' ? ` bank of ${result.data.train.toLocaleString('en')} training images` : ` trained on ${result.data.train.toLocaleString('en')} training images`}
          {result.valLoss !== undefined ? `; validation loss ${result.valLoss.toFixed(3)}` : ''}; chance ≈ {percent(chance, 0)}; {result.seconds.toFixed(1)} s)
          {worst && result.perClass.length > 1 ? ` · weakest class: ${worst.name} (${percent(worst.accuracy!)})` : ''}
        </span>
      </p>
      <div className="eval-pictures">
        <figure>
          <figcaption>Accuracy per class</figcaption>
          <PerClassBars perClass={result.perClass} />
        </figure>
        <figure>
          <figcaption>Confusion matrix (rows: true class, coloured by the row’s share; hover a cell for its count)</figcaption>
          <ConfusionMatrix confusion={result.confusion} classNames={result.classNames} />
        </figure>
      </div>
    </div>
  );
}
