/**
 * "Export weights": a run's final parameters as files for PyTorch/timm/ONNX (src/io/bundle.ts
 * makes them; this only offers them for download, one file as is, several in one zip).
 */
import { strToU8, zipSync } from 'fflate';
import { useState } from 'react';
import type { ParamsPayload, ResolvedTrainSpec } from '../../protocol/train';
import { payloadTensors } from '../../protocol/train';

export interface ExportInput {
  params: ParamsPayload;
  config: ResolvedTrainSpec;
  step: number;
  norm?: { mean: number[]; std: number[] };
  /** File name stem. */
  name: string;
  /** Training images, for continue-training.txt's epochs. */
  nTrain?: number;
}

const FORMATS = [
  { id: 'full', label: 'safetensors (full model, reference names)' },
  { id: 'timm', label: 'safetensors (timm encoder)' },
  { id: 'onnx', label: 'ONNX (encoder + MAE)' },
] as const;

function download(name: string, data: Uint8Array | string, mime: string): void {
  const blob = new Blob([typeof data === 'string' ? data : new Uint8Array(data)], { type: mime });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const safeName = (s: string) => s.replace(/[^\w.-]+/g, '-').replace(/^-+|-+$/g, '') || 'model';

export function ExportButton({ source, load, compact }: { source?: ExportInput | null; load?: () => Promise<ExportInput | null>; compact?: boolean }) {
  const [format, setFormat] = useState<(typeof FORMATS)[number]['id']>('full');
  const [state, setState] = useState<{ busy: boolean; error: string | null }>({ busy: false, error: null });
  const available = !!source || !!load;

  const run = async () => {
    setState({ busy: true, error: null });
    try {
      const input = source ?? (await load?.());
      if (!input) throw new Error('this run has no kept weights to export.');
      const { exportFiles } = await import('../../io/bundle');
      const params = new Map<string, Float64Array>();
      for (const [name, v] of payloadTensors(input.params)) params.set(name, Float64Array.from(v));
      const c = input.config;
      const { files } = exportFiles(
        {
          model: { mode: c.mode, config: c.model, teacher: c.teacher, distill: c.distill, step: input.step },
          params, norm: input.norm, run: c,
          stepsPerEpoch: input.nTrain ? Math.max(1, Math.floor(input.nTrain / (c.batch * c.accumSteps))) : undefined,
        },
        format,
      );
      const stem = `${safeName(input.name)}-${format}`;
      if (files.length === 1) download(`${stem}-${files[0].name}`, files[0].data, files[0].mime);
      else {
        const zip = zipSync(Object.fromEntries(files.map((f) => [f.name, typeof f.data === 'string' ? strToU8(f.data) : f.data])));
        download(`${stem}.zip`, zip, 'application/zip');
      }
      setState({ busy: false, error: null });
    } catch (e) {
      setState({ busy: false, error: `Export failed: ${e instanceof Error ? e.message : String(e)}` });
    }
  };

  return (
    <span className={`export ${compact ? 'compact' : ''}`} data-testid="export">
      <select aria-label="Export format" value={format} onChange={(e) => setFormat(e.target.value as typeof format)} disabled={!available || state.busy}>
        {FORMATS.map((f) => <option key={f.id} value={f.id}>{f.label}</option>)}
      </select>
      <button type="button" className="secondary" disabled={!available || state.busy} onClick={() => void run()} data-testid="export-button"
        title={available ? 'Download the weights in this format' : 'Weights can be exported once a run has ended (or from Runs, for a run whose weights are kept)'}>
        {state.busy ? 'Exporting…' : 'Export weights'}
      </button>
      {state.error && <span className="problem" role="alert">{state.error}</span>}
    </span>
  );
}
