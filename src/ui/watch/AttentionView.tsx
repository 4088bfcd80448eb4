/**
 * Attention maps of a chosen encoder block and head, for the run's student and (DMAE) its frozen
 * teacher, on one of the run's fixed validation images: the cls token's attention over the patch
 * grid drawn over the image, and the whole [T, T] softmax matrix (row i: where token i looks).
 * Tokens are every patch of the image, or the patches the validation mask keeps (what the encoder
 * sees in training). Asked of the worker ('request-attention'); served between steps, so the map
 * is the model's at that step. With "follow" on, it is asked again at every new reconstruction.
 * When the run has ended, the worker answers for its student from the final parameters it keeps.
 *
 * The teacher is loaded only up to its deepest aligned block kT, so its blocks are 0..kT.
 */
import { useEffect, useMemo, useRef, useState, type CSSProperties } from 'react';
import { useAttentionStore, useTrainStore } from '../../store/train';
import type { AttentionMap } from '../../protocol/train';
import { clsOverlay, matrixImage, rowSumError } from './heatmap';

export interface AttentionViewProps {
  /** Pixel size of each picture on the page (default 192). */
  size?: number;
}

const ACTIVE = ['running', 'pausing', 'paused'];
const row: CSSProperties = { display: 'flex', flexWrap: 'wrap', gap: '6px 14px', alignItems: 'center', margin: '4px 0 8px' };
const sel: CSSProperties = { marginLeft: 6, font: 'inherit' };
const range = (n: number) => Array.from({ length: Math.max(0, n) }, (_, i) => i);

export function AttentionView({ size = 192 }: AttentionViewProps) {
  const run = useTrainStore((s) => s.run);
  const reconStep = useTrainStore((s) => s.run?.reconstruction?.step ?? null);
  const attention = useAttentionStore((s) => s.attention);
  const requestAttention = useAttentionStore((s) => s.requestAttention);
  const cfg = run?.started?.config;
  const live = !!run && ACTIVE.includes(run.status) && !!cfg;
  // An ended run answers too (its student, from its final parameters, while the worker keeps it).
  const active = !!run && !!cfg && (live || ['done', 'stopped', 'error'].includes(run.status));

  const [model, setModel] = useState<'student' | 'teacher'>('student');
  const [block, setBlock] = useState(0);
  const [head, setHead] = useState(0);
  const [image, setImage] = useState(0);
  const [tokens, setTokens] = useState<'all' | 'visible'>('all');
  const [follow, setFollow] = useState(true);

  const hasTeacher = live && cfg?.mode === 'dmae' && !!cfg.teacher && !!cfg.distill;
  const which = model === 'teacher' && hasTeacher ? 'teacher' : 'student';
  const spec = which === 'teacher' ? cfg?.teacher : cfg?.model;
  const blocks = which === 'teacher' && cfg?.distill ? Math.max(...cfg.distill.pairs.map((p) => p.teacherBlock)) + 1 : (spec?.depth ?? 0);
  const heads = spec?.numHeads ?? 0;
  const images = Math.min(cfg?.batch ?? 0, 16);
  // Keep the choices in range when the run or the model changes.
  const b = Math.min(block, Math.max(0, blocks - 1)), h = Math.min(head, Math.max(0, heads - 1)), n = Math.min(image, Math.max(0, images - 1));

  const ask = () => {
    if (run && active) requestAttention(run.runId, { model: which, block: b, head: h, image: n, tokens });
  };
  const askRef = useRef(ask);
  askRef.current = ask;
  // A new choice, a new run, or (following) a new reconstruction: ask again.
  useEffect(() => {
    if (active) askRef.current();
  }, [active, live, run?.runId, which, b, h, n, tokens]);
  useEffect(() => {
    if (follow && active && reconStep !== null) askRef.current();
  }, [reconStep, follow, active]);

  const map = attention && run && attention.runId === run.runId ? attention.map : undefined;
  const status = !attention || !run || attention.runId !== run.runId ? 'idle' : attention.status;

  return (
    <section
      className="card" data-testid="attention-view" data-status={status} data-step={map?.step ?? ''}
      data-model={map?.request.model ?? ''} data-block={map?.request.block ?? ''} data-head={map?.request.head ?? ''} data-tokens={map?.request.tokens ?? ''}
    >
      <h2>Attention {map && <span className="badge">step {map.step}</span>}</h2>
      {!cfg && <p className="muted">Attention maps appear once a run has started.</p>}
      {cfg && (
        <div style={row}>
          <label>
            Model
            <select value={which} onChange={(e) => setModel(e.target.value as 'student' | 'teacher')} style={sel} data-testid="attention-model">
              <option value="student">{cfg.mode === 'dmae' ? 'student' : 'encoder'}</option>
              {hasTeacher && <option value="teacher">teacher</option>}
            </select>
          </label>
          <label>
            Block
            <select value={b} onChange={(e) => setBlock(Number(e.target.value))} style={sel} data-testid="attention-block">
              {range(blocks).map((i) => <option key={i} value={i}>{i}</option>)}
            </select>
          </label>
          <label>
            Head
            <select value={h} onChange={(e) => setHead(Number(e.target.value))} style={sel} data-testid="attention-head">
              {range(heads).map((i) => <option key={i} value={i}>{i}</option>)}
            </select>
          </label>
          <label>
            Image
            <select value={n} onChange={(e) => setImage(Number(e.target.value))} style={sel} data-testid="attention-image">
              {range(images).map((i) => <option key={i} value={i}>{i + 1}</option>)}
            </select>
          </label>
          <label>
            Tokens
            <select value={tokens} onChange={(e) => setTokens(e.target.value as 'all' | 'visible')} style={sel} data-testid="attention-tokens">
              <option value="all">every patch</option>
              <option value="visible">visible patches (as trained)</option>
            </select>
          </label>
          <label><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow training</label>
          <button type="button" onClick={ask} disabled={!active} data-testid="attention-show">Show</button>
        </div>
      )}
      {cfg && !active && <p className="muted">Attention maps are computed while a run trains or is paused, and for the last runs that ended on this page.</p>}
      {cfg && active && !live && cfg.mode === 'dmae' && <p className="muted">The run has ended: its student's final attention (the teacher is shown while a DMAE run trains or is paused).</p>}
      {which === 'teacher' && <p className="muted">The teacher is loaded up to its deepest aligned block kT = {blocks - 1}: blocks 0..{blocks - 1}.</p>}
      {status === 'failed' && attention?.problem && <p className="verdict fail" role="alert">{attention.problem}</p>}
      {status === 'loading' && !map && <p className="muted">Computing…</p>}
      {map && <AttentionPictures map={map} size={size} />}
    </section>
  );
}

function AttentionPictures({ map, size }: { map: AttentionMap; size: number }) {
  const overlay = useRef<HTMLCanvasElement>(null);
  const matrix = useRef<HTMLCanvasElement>(null);
  const { m, cls, err, present } = useMemo(() => {
    const m = new Float32Array(map.matrix), cls = new Float32Array(map.cls);
    const present = new Array<boolean>(map.grid * map.grid).fill(false);
    for (const p of map.patchOf) present[p] = true;
    return { m, cls, err: rowSumError(m, map.tokens), present };
  }, [map]);
  useEffect(() => {
    const S = map.image.width;
    const o = overlay.current?.getContext('2d');
    if (o) o.putImageData(new ImageData(clsOverlay(new Uint8ClampedArray(map.image.data), S, cls, map.grid, present), S, S), 0, 0);
    const t = matrix.current?.getContext('2d');
    if (t) t.putImageData(new ImageData(matrixImage(m, map.tokens), map.tokens, map.tokens), 0, 0);
  }, [map, m, cls, present]);
  const pic: CSSProperties = { width: size, height: size, imageRendering: 'pixelated', display: 'block', border: '1px solid rgba(128,128,128,0.4)' };
  const { model, block, head, tokens } = map.request;
  return (
    <div data-testid="attention-pictures" data-row-sum-error={err.toExponential(2)} style={{ display: 'flex', flexWrap: 'wrap', gap: 16 }}>
      <figure style={{ margin: 0 }}>
        <canvas ref={overlay} width={map.image.width} height={map.image.height} style={pic} data-testid="attention-overlay"
          role="img" aria-label={`cls attention of ${model} block ${block} head ${head} over the image`} />
        <figcaption className="muted" style={{ maxWidth: size }}>cls → patches{tokens === 'visible' ? ' (masked patches dark)' : ''}</figcaption>
      </figure>
      <figure style={{ margin: 0 }}>
        <canvas ref={matrix} width={map.tokens} height={map.tokens} style={pic} data-testid="attention-matrix"
          role="img" aria-label={`${map.tokens}×${map.tokens} attention matrix`} />
        <figcaption className="muted" style={{ maxWidth: size }}>{map.tokens}×{map.tokens} (row: query, column: key; token 0 is cls; each row scaled to its max)</figcaption>
      </figure>
      <p className="muted" style={{ flexBasis: '100%', margin: 0 }}>
        {model} block {block} head {head} of {map.heads} · step {map.step} · rows sum to 1 within {err.toExponential(1)}
      </p>
    </div>
  );
}
