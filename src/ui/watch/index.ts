/**
 * The studio's "Watch" components, self-contained (each reads the store itself; props only
 * override). Mount them anywhere in the layout:
 *
 *   <LossChart />                 live curves of the current run + useStudioStore.compareRunIds
 *   <LossChart runIds={[a, b]} labels={{ [a]: 'tiny MAE' }} />   explicit runs (first = debug summary)
 *   <ReconstructionView />        the current run's latest reconstruction grid
 *   <AttentionView />             attention maps of the current run (student; teacher in DMAE)
 *   <TeacherPanel />              train / pick / import a teacher; "Distil from it" (onDistill overrides)
 *   <KnnChart />                  the live k-NN monitor's accuracy (current run + compared runs; hidden without points)
 *   <EvaluationView result={r} /> an evaluation's accuracy, per-class bars and confusion heatmap
 *
 * Store contract (src/store/train.ts):
 * - per-step records: `trainMetrics` (the worker's batches). To overlay a stored run, append its
 *   records with `trainMetrics.append(id, records)` and put its id in
 *   `useStudioStore.compareRunIds` (src/store/runs.ts loadHistory does the first part); names come
 *   from LossChart's `labels`, else the runs list. The chart also dots the validation pixel loss
 *   at each reconstruction of this page's runs (recorded from the store's run.reconstruction).
 * - the teacher of the next DMAE run: `useStudioStore.teacher` (a TeacherChoice: label, model,
 *   source { kind: 'params' }). TeacherPanel sets it when a teacher is trained, picked or imported;
 *   "Distil from it" sets the form (useConfigStore) to DMAE with kT in the teacher's range, or
 *   calls `onDistill` instead; the layout's start sends `teacher: choice.source` and
 *   `config.teacher: choice.model` (RunPanel does).
 * - attention maps: `useAttentionStore` ('request-attention' → 'attention' in src/protocol/train.ts).
 *
 * Hooks for end-to-end tests (read-only DOM attributes, updated as their data arrive, in the same task):
 * - [data-testid=loss-chart]: data-run-id, data-points, data-first-step, data-last-step,
 *   data-first-loss, data-last-loss, data-head-loss, data-tail-loss (mean total loss of the first
 *   and last fifth of the steps: a falling curve has tail < head), data-last-distill (Σ distill of
 *   the last step in DMAE, '' in MAE), data-contiguous ('true': steps 1, 2, 3… with no gap or
 *   repeat, so a paused and resumed run continued the same curve), data-runs, data-series.
 *     await expect.poll(() => chart.getAttribute('data-points')).not.toBe('0');
 *     const head = Number(await chart.getAttribute('data-head-loss')), tail = Number(await chart.getAttribute('data-tail-loss'));
 *   Controls: [data-testid=loss-chart-smoothing] (range), -log (checkbox), -reset-zoom (button).
 * - [data-testid=reconstruction-view]: data-step (of the picture shown), data-latest-step, data-rows,
 *   data-levels, data-nonblank ('true' when the original and reconstruction columns are not
 *   blank); canvas [data-testid=reconstruction-canvas]; slider [data-testid=reconstruction-history]
 *   (the run's earlier reconstructions; it follows the latest unless moved).
 * - [data-testid=attention-view]: data-status ('idle' | 'loading' | 'done' | 'failed'), data-step,
 *   data-model, data-block, data-head, data-tokens (of the map shown); inside it
 *   [data-testid=attention-pictures] data-row-sum-error (max |Σ row − 1|), canvases
 *   [data-testid=attention-overlay] and [data-testid=attention-matrix]; selects
 *   [data-testid=attention-model|attention-block|attention-head|attention-image|attention-tokens],
 *   button [data-testid=attention-show]. Maps are served while the run trains or is paused, and for
 *   the student of the last few runs that ended on the page.
 * - [data-testid=teacher-panel]: data-teacher (the chosen teacher's label, '' when none),
 *   data-teacher-run (its run id), data-training-run (the teacher run in progress, ''); buttons
 *   [data-testid=teacher-train] (starts a MAE 2× wider, ≥ 4 blocks, with startStudioRun; chosen
 *   as the teacher when it ends), [data-testid=teacher-distill] (mode DMAE in the form),
 *   [data-testid=teacher-clear]; select [data-testid=teacher-pick] (ended MAE runs with weights);
 *   file input [data-testid=teacher-import]; [data-testid=teacher-size], [data-testid=teacher-kt].
 */
export { LossChart, type LossChartProps } from './LossChart';
export { ReconstructionView, type ReconstructionViewProps } from './ReconstructionView';
export { AttentionView, type AttentionViewProps } from './AttentionView';
export { TeacherPanel, type TeacherPanelProps } from './TeacherPanel';
export { KnnChart } from './KnnChart';
export { ConfusionMatrix, EvaluationView, PerClassBars } from './EvaluationView';
export { encoderParamCount, teacherModelFor } from './teacher';
