/**
 * Checkpoints in the studio: the resume offer shown after a reload or a crash ("Run X stopped at
 * step N — Resume / Discard"), and on the run panel the autosave interval, "Download checkpoint"
 * (one .safetensors file), "Resume from file…", the latest autosave and any save error (a full
 * quota is said, never silent). The logic is src/store/checkpoints.ts.
 */
import { useEffect, useRef } from 'react';
import { discardStored, downloadCheckpoint, loadOffers, resumeFile, resumeStored, useCheckpointsStore, watchCheckpoints } from '../../store/checkpoints';
import { useTrainStore, type RunView } from '../../store/train';
import { useConfigStore } from './state';

const isActive = (run: RunView | null): boolean => !!run && ['starting', 'running', 'pausing', 'paused', 'stopping'].includes(run.status);

/** The unfinished runs kept in this browser, each with Resume and Discard. */
export function ResumeOffer() {
  const offers = useCheckpointsStore((s) => s.offers);
  const run = useTrainStore((s) => s.run);
  const worker = useTrainStore((s) => s.worker);
  useEffect(() => {
    watchCheckpoints();
    void loadOffers();
  }, []);
  if (offers.length === 0) return null;
  const busy = isActive(run);
  return (
    <section className="card resume-offer" data-testid="resume-offer" role="status">
      {offers.map((o) => (
        <p key={o.runId} data-testid="resume-offer-row" data-run={o.runId} data-step={o.step}>
          Run <strong>{o.label || o.runId}</strong> ({o.mode.toUpperCase()}) stopped at step <strong>{o.step}</strong> of {o.totalSteps}
          {' '}(saved {new Date(o.savedAt).toLocaleString()}).{' '}
          <button type="button" data-testid="resume-offer-resume" disabled={busy || worker.status === 'unavailable'}
            onClick={() => void resumeStored(o.runId, useConfigStore.getState().config)}>Resume</button>{' '}
          <button type="button" data-testid="resume-offer-discard" onClick={() => void discardStored(o.runId)}>Discard</button>
        </p>
      ))}
      {busy && <p className="muted">Stop the current run to resume another.</p>}
    </section>
  );
}

/** On the run panel: autosave interval, download, upload, the latest save and its errors. */
export function CheckpointControls() {
  const run = useTrainStore((s) => s.run);
  const worker = useTrainStore((s) => s.worker);
  const every = useCheckpointsStore((s) => s.autosaveEvery);
  const lastSaved = useCheckpointsStore((s) => s.lastSaved);
  const saveError = useCheckpointsStore((s) => s.saveError);
  const resumeError = useCheckpointsStore((s) => s.resumeError);
  const fileInput = useRef<HTMLInputElement>(null);
  const active = isActive(run);
  const saved = lastSaved && run && lastSaved.runId === run.runId ? lastSaved : null;
  return (
    <div className="checkpoints" data-testid="checkpoints">
      <label>
        Autosave every{' '}
        <input type="number" min={0} step={1} value={every} style={{ width: '5em' }} data-testid="autosave-every"
          onChange={(e) => useCheckpointsStore.getState().setAutosaveEvery(Number(e.target.value))} />
        {' '}steps (and on pause)
      </label>{' '}
      <button type="button" data-testid="download-checkpoint" disabled={!run?.checkpoint}
        title={run?.checkpoint ? `The run at step ${run.checkpoint.step}` : 'Pause, stop or finish a run first'}
        onClick={() => run && void downloadCheckpoint(run)}>Download checkpoint{run?.checkpoint ? ` (step ${run.checkpoint.step})` : ''}</button>{' '}
      <button type="button" data-testid="resume-file" disabled={active || worker.status === 'unavailable'} onClick={() => fileInput.current?.click()}>Resume from file…</button>
      <input ref={fileInput} type="file" accept=".safetensors" hidden data-testid="resume-file-input"
        onChange={(e) => {
          const f = e.target.files?.[0];
          e.target.value = '';
          if (f) void resumeFile(f, useConfigStore.getState().config);
        }} />
      <span className="muted" data-testid="autosave-status" data-step={saved?.step ?? ''} data-slot={saved?.slot ?? ''}>
        {saved ? ` Saved in this browser at step ${saved.step}.` : ''}
      </span>
      {saveError && <p className="verdict fail" role="alert" data-testid="checkpoint-save-error">{saveError}</p>}
      {resumeError && <p className="verdict fail" role="alert" data-testid="checkpoint-resume-error">{resumeError}</p>}
    </div>
  );
}
