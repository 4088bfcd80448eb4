/**
 * The training worker's logic (createTrainSession) in Node on real WebGPU, for the protocol
 * tests: every message the session posts is cloned and transferred as postMessage does, and lands
 * in `got`; `waitFor` resolves with the first matching one. Built-in data only, unless `env`
 * brings its own loadDataset.
 */
import { loadBuiltinNode } from '../../src/data/node';
import { DatasetError } from '../../src/data/errors';
import { builtinDatasetId, shapesOptionsFor } from '../../src/engine/run';
import { acquireNodeGpu } from '../../src/gpu/node-device';
import { transferablesOf, type FromTrainWorker, type ModelSpec, type StepRecord, type TrainSpec } from '../../src/protocol/train';
import { createTrainSession, type TrainSession, type TrainSessionEnv } from '../../src/worker/train-session';

export type Of<T extends FromTrainWorker['type']> = Extract<FromTrainWorker, { type: T }>;

export function sessionHarness(env: Partial<TrainSessionEnv> = {}, waitMs = 60_000) {
  const got: FromTrainWorker[] = [];
  let notify = () => {};
  const session: TrainSession = createTrainSession(
    {
      acquireGpu: (needs) => acquireNodeGpu(needs),
      async loadDataset(data, model) {
        if (data.kind !== 'builtin') throw new DatasetError(`stored dataset ${data.id}`, 'not-found', 'is not in this browser’s storage.');
        return loadBuiltinNode(builtinDatasetId(data.id), shapesOptionsFor(model));
      },
      ...env,
    },
    (msg) => {
      got.push(structuredClone(msg, { transfer: transferablesOf(msg) }));
      notify();
    },
  );
  /** Resolves with the first message (from `from` on) that passes `pred`. */
  const waitFor = async <T extends FromTrainWorker['type']>(type: T, pred: (m: Of<T>) => boolean = () => true, from = 0, ms = waitMs): Promise<Of<T>> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = got.slice(from).find((x) => x.type === type && pred(x as Of<T>));
      if (m) return m as Of<T>;
      if (Date.now() > deadline) throw new Error(`no "${type}" message in time; got: ${got.map((x) => x.type).join(', ')}`);
      await new Promise<void>((r) => {
        notify = r;
        setTimeout(r, 50);
      });
    }
  };
  const of = <T extends FromTrainWorker['type']>(type: T, runId?: string) => got.filter((m) => m.type === type && (runId === undefined || (m as { runId?: string }).runId === runId)) as Of<T>[];
  const records = (runId: string): StepRecord[] => of('metrics', runId).flatMap((m) => m.records);
  return { session, got, waitFor, of, records };
}

/** A tiny MAE on 16×16 gray images, and a short run of it. */
export const model = (o: Partial<ModelSpec> = {}): ModelSpec => ({
  imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4,
  decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true, ...o,
});
export const spec = (o: Partial<TrainSpec> = {}): TrainSpec => ({ mode: 'mae', model: model(), batch: 8, totalSteps: 20, seed: 5, lr: 2e-3, warmupSteps: 2, maskRatio: 0.75, ...o });
export const shapes = { kind: 'builtin', id: 'shapes', augment: 'none' } as const;
