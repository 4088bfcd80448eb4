/**
 * Where the Watch components (src/ui/watch/, self-contained, reading the stores) sit in the
 * layout: the curves (with the runs ticked in Runs overlaid, named as the list names them; the
 * k-NN monitor's accuracy under the losses when a run has it), the
 * reconstructions and the attention maps under Run; the teacher panel beside Configure.
 */
import { useMemo } from 'react';
import { useRunsStore } from '../../store/runs';
import { useStudioStore } from '../../store/train';
import { AttentionView, KnnChart, LossChart, ReconstructionView, TeacherPanel } from '../watch';

export function Watch() {
  // Names for the overlaid runs only: a new run entering the list must not rebuild the charts.
  const compare = useStudioStore((s) => s.compareRunIds);
  const names = useRunsStore((s) => compare.map((id) => s.runs.find((r) => r.id === id)?.name ?? id).join('\n'));
  const labels = useMemo(() => {
    const list = names.split('\n');
    return Object.fromEntries(compare.map((id, i) => [id, list[i]]));
  }, [compare, names]);
  return (
    <div className="watch" data-testid="watch">
      <LossChart labels={labels} />
      <KnnChart />
      <ReconstructionView />
      <AttentionView />
    </div>
  );
}

export { TeacherPanel };
