/**
 * `npm run dmae -- experiment <name|all>`: the method's claims (dmae-recipe.md §3) checked in
 * miniature, end to end: teacher pretraining, teacher fine-tuning where needed, the students,
 * their evaluation; then a Markdown page, an SVG plot and a JSON summary per experiment.
 *
 * Every step is a job: one command of this CLI (or of the benchmarks) run as a child process,
 * its output under --work, its log in <work>/logs, its record (command, wall time) in
 * <work>/jobs. A job whose record matches its command is not run again, so experiments share
 * their teacher and students, and an interrupted experiment carries on where it stopped (a
 * training run cut short resumes from its checkpoint).
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { lenKeepFor } from '../core/masking';
import { dotsWithSpread, linesWithSpread, markdownTable, pct, pctSpread, renderSvg, seconds, spread, verdict, type Point } from './experiment-report';
import { CHECKPOINT_FILE, MODEL_FILE } from './checkpoints';

export const EXPERIMENTS = {
  'dmae-vs-mae': 'the DMAE student against the same student trained with the MAE loss alone, equal steps',
  'dmae-vs-kd': 'DMAE from the pre-trained teacher against distillation from the fine-tuned teacher (its features, and its soft labels)',
  'mask-ratio': 'the DMAE student\'s accuracy at masking ratios 0.75, 0.9, 0.95, 0.98',
  cost: 'time per training step: DMAE with the teacher stopped at kT, with the whole teacher, and MAE alone',
} as const;
export type ExperimentName = keyof typeof EXPERIMENTS;

export const EXPERIMENT_HELP = `Usage: npm run dmae -- experiment <name | all> [options]

Experiments (each writes <out>/<name>.md, <name>.svg and <name>.json):
${Object.entries(EXPERIMENTS).map(([k, v]) => `  ${k.padEnd(12)} ${v}`).join('\n')}
  all          the four, sharing the teacher and the students

  --seeds 0,1,2        student seeds (init, data order, masks); the spread over them is reported
  --scale full|smoke   full: the sizes of docs/results (about 2 h on 2 CPU cores with lavapipe);
                       smoke: tiny models and a few steps, to check the pipeline (about 3 min)
  --work DIR           where runs, logs and job records go (default runs/experiments; runs/smoke
                       for --scale smoke); jobs already done there are reused
  --out DIR            where the pages go (default docs/results; runs/smoke/results for smoke)
  --dry-run            print the jobs (their exact commands) and stop
`;

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

interface Sizes {
  embedDim: number;
  depth: number;
  heads: number;
  decoderDim: number;
  decoderDepth: number;
  decoderHeads: number;
}
interface Schedule {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
}

export interface Scale {
  data: string;
  /** The built-in data's geometry (for the cost benchmark's configs). */
  image: { imgSize: number; patchSize: number; inChans: number };
  teacher: Sizes & Schedule & { seed: number };
  student: Sizes & Schedule;
  ratios: number[];
  /** Frozen-feature evaluation: bank / probe training samples and validation samples. */
  features: { maxTrain: number; maxVal: number };
  linprobe: { steps: number; batch: number };
  teacherFinetune: { steps: number; batch: number };
  kd: { temperature: number; softWeight: number };
  cost: { batch: number; reps: number };
}

const FULL: Scale = {
  data: 'mnist',
  image: { imgSize: 28, patchSize: 4, inChans: 1 },
  teacher: { embedDim: 128, depth: 6, heads: 4, decoderDim: 64, decoderDepth: 2, decoderHeads: 4, steps: 600, batch: 64, lr: 1e-3, warmup: 30, seed: 0 },
  student: { embedDim: 64, depth: 4, heads: 4, decoderDim: 64, decoderDepth: 1, decoderHeads: 4, steps: 300, batch: 32, lr: 1e-3, warmup: 15 },
  ratios: [0.75, 0.9, 0.95, 0.98],
  features: { maxTrain: 2000, maxVal: 1000 },
  linprobe: { steps: 500, batch: 256 },
  teacherFinetune: { steps: 200, batch: 32 },
  kd: { temperature: 4, softWeight: 0.5 },
  cost: { batch: 32, reps: 5 },
};

const SMOKE: Scale = {
  data: 'mnist',
  image: { imgSize: 28, patchSize: 4, inChans: 1 },
  teacher: { embedDim: 32, depth: 2, heads: 2, decoderDim: 16, decoderDepth: 1, decoderHeads: 2, steps: 4, batch: 8, lr: 1e-3, warmup: 1, seed: 0 },
  student: { embedDim: 16, depth: 2, heads: 2, decoderDim: 16, decoderDepth: 1, decoderHeads: 2, steps: 3, batch: 8, lr: 1e-3, warmup: 1 },
  ratios: [0.75, 0.98],
  features: { maxTrain: 64, maxVal: 32 },
  linprobe: { steps: 5, batch: 16 },
  teacherFinetune: { steps: 3, batch: 8 },
  kd: { temperature: 4, softWeight: 0.5 },
  cost: { batch: 4, reps: 1 },
};

export const SCALES = { full: FULL, smoke: SMOKE } as const;

const sizeArgs = (s: Sizes): string[] => [
  '--embed-dim', `${s.embedDim}`, '--depth', `${s.depth}`, '--heads', `${s.heads}`,
  '--decoder-dim', `${s.decoderDim}`, '--decoder-depth', `${s.decoderDepth}`, '--decoder-heads', `${s.decoderHeads}`,
];
/** Numbers as a person types them: 1e-3, not 0.001. */
const num = (x: number): string => (x > 0 && x < 0.01 ? x.toExponential() : `${x}`);
const scheduleArgs = (s: Schedule): string[] => ['--steps', `${s.steps}`, '--batch', `${s.batch}`, '--lr', num(s.lr), '--warmup', `${s.warmup}`];

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

export interface Job {
  /** Unique within a work folder: its record is <work>/jobs/<id>.json, its log <work>/logs/<id>.log. */
  id: string;
  /** In words, for the log and the pages. */
  title: string;
  tool: 'dmae' | 'bench';
  argv: string[];
  /** The JSON the job's result is read from (it proves the job done). */
  result: string;
  /** A training job's run folder (a finished run with the same command is adopted, a cut one resumed). */
  runDir?: string;
}

export interface JobRecord {
  id: string;
  command: string;
  seconds: number;
  finishedAt: string;
  /** A training run found finished in its folder (its wall time from its metrics.jsonl). */
  adopted?: boolean;
}

const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
export const commandOf = (j: Pick<Job, 'tool' | 'argv'>): string => `npm run ${j.tool} -- ${j.argv.map(quote).join(' ')}`;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** The last training-step line of a run's metrics.jsonl (validation and k-NN lines carry no loss), if any. */
function lastMetrics(runDir: string): { step: number; elapsedMs?: number } | null {
  const p = join(runDir, 'metrics.jsonl');
  if (!existsSync(p)) return null;
  const steps = readFileSync(p, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss?: number; elapsedMs?: number }).filter((m) => m.loss !== undefined);
  return steps.length ? steps[steps.length - 1] : null;
}

/**
 * A training run in its folder: none, another command's, this command's cut before its first
 * checkpoint (stale: started again), cut after one (partial: resumed), or finished.
 */
function runState(job: Job): 'none' | 'other' | 'stale' | 'partial' | 'done' {
  const cfgPath = join(job.runDir!, 'config.json');
  if (!existsSync(cfgPath)) return 'none';
  const cfg = readJson<{ command?: string; config?: { totalSteps?: number } }>(cfgPath);
  if (cfg.command !== `dmae ${job.argv.join(' ')}`) return 'other';
  const last = lastMetrics(job.runDir!);
  if (last && last.step === cfg.config?.totalSteps && existsSync(join(job.runDir!, MODEL_FILE))) return 'done';
  return existsSync(join(job.runDir!, CHECKPOINT_FILE)) ? 'partial' : 'stale';
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function spawnJob(args: string[], tool: Job['tool'], logPath: string): Promise<number> {
  const script = tool === 'dmae' ? join(ROOT, 'src/cli/main.ts') : join(ROOT, 'bench/run.ts');
  mkdirSync(dirname(logPath), { recursive: true });
  const log = createWriteStream(logPath, { flags: 'a' });
  log.write(`\n$ ${commandOf({ tool, argv: args })}\n`);
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on('error', fail);
    child.on('close', (code) => log.end(() => done(code ?? 1)));
  });
}

export class JobRunner {
  readonly records = new Map<string, JobRecord>();
  /** Jobs found done (by their record, or as a finished run). */
  readonly reused = new Set<string>();
  constructor(readonly work: string, readonly say: (line: string) => void) {}

  private recordPath = (id: string) => join(this.work, 'jobs', `${id}.json`);
  logPath = (id: string) => join(this.work, 'logs', `${id}.log`);

  /** Runs the job unless its record (or, for training, its finished run) says it is done. */
  async run(job: Job, index: string): Promise<JobRecord> {
    const command = commandOf(job);
    const rp = this.recordPath(job.id);
    if (existsSync(rp) && existsSync(job.result)) {
      const r = readJson<JobRecord>(rp);
      if (r.command === command) {
        this.say(`${index} ${job.id}: done before (${seconds(r.seconds)}), reused`);
        this.records.set(job.id, r);
        this.reused.add(job.id);
        return r;
      }
    }
    const state = job.runDir ? runState(job) : 'none';
    let record: JobRecord;
    if (state === 'done') {
      record = { id: job.id, command, seconds: (lastMetrics(job.runDir!)!.elapsedMs ?? 0) / 1000, finishedAt: new Date().toISOString(), adopted: true };
      this.say(`${index} ${job.id}: finished run found in ${job.runDir}, adopted`);
      this.reused.add(job.id);
    } else {
      if (state === 'other') throw new Error(`${job.runDir} holds another run (its config.json has another command); move it away or give another --work.`);
      if (state === 'stale') rmSync(job.runDir!, { recursive: true, force: true });
      const args = state === 'partial' ? ['train', '--resume', job.runDir!] : job.argv;
      this.say(`${index} ${job.id}: ${job.title}${state === 'partial' ? ' (resuming its checkpoint)' : ''} …`);
      const t0 = performance.now();
      const code = await spawnJob(args, job.tool, this.logPath(job.id));
      const secs = (performance.now() - t0) / 1000;
      if (code !== 0 || !existsSync(job.result)) {
        const tail = existsSync(this.logPath(job.id)) ? readFileSync(this.logPath(job.id), 'utf8').trim().split('\n').slice(-6).join('\n') : '';
        throw new Error(`job ${job.id} failed (exit ${code}${code === 0 ? `, but no ${job.result}` : ''}): ${command}\nits log, ${this.logPath(job.id)}, ends with:\n${tail}`);
      }
      // A resumed run's own clock (metrics.jsonl) covers both sessions.
      const elapsed = state === 'partial' ? lastMetrics(job.runDir!)?.elapsedMs : undefined;
      record = { id: job.id, command, seconds: elapsed !== undefined ? elapsed / 1000 : secs, finishedAt: new Date().toISOString() };
      this.say(`${index} ${job.id}: done in ${seconds(record.seconds)}`);
    }
    mkdirSync(dirname(rp), { recursive: true });
    writeFileSync(rp, `${JSON.stringify(record, null, 2)}\n`);
    this.records.set(job.id, record);
    return record;
  }
}

// ---------------------------------------------------------------------------------------------
// The experiments
// ---------------------------------------------------------------------------------------------

type Metric = 'knn' | 'linprobe';
const METRIC_NAMES: Record<Metric, string> = { knn: 'k-NN', linprobe: 'linear probe' };
/**
 * The students are compared on frozen features. At these sizes a fine-tuning budget comparable
 * to the pretraining one (100–150 steps of 32) leaves every encoder near 25–30 %: too short to
 * separate them, and a long one costs more than the students.
 */
const FROZEN = ['knn', 'linprobe'] as const;

/** The jobs of every experiment, by id, built once so that experiments share them. */
export class Plan {
  readonly jobs = new Map<string, Job>();
  constructor(readonly scale: Scale, readonly seeds: number[], readonly work: string) {}

  private add(j: Job): Job {
    const had = this.jobs.get(j.id);
    if (had && commandOf(had) !== commandOf(j)) throw new Error(`two jobs named ${j.id}`);
    if (!had) this.jobs.set(j.id, j);
    return had ?? j;
  }

  dir = (id: string): string => join(this.work, id);

  teacher(): Job {
    const t = this.scale.teacher, out = this.dir('teacher');
    return this.add({
      id: 'teacher', title: `MAE teacher ${t.embedDim}×${t.depth}, ${t.steps} steps`, tool: 'dmae', runDir: out, result: join(out, 'config.json'),
      argv: ['train', '--data', this.scale.data, ...sizeArgs(t), ...scheduleArgs(t), '--seed', `${t.seed}`, '--out', out],
    });
  }

  /** The fine-tuned teacher (for both of experiment 2's baselines). */
  teacherFinetuned(): Job {
    const f = this.scale.teacherFinetune, out = this.dir('teacher-finetuned');
    return this.add({
      id: 'teacher-finetuned', title: `teacher fine-tuned with labels, ${f.steps} steps`, tool: 'dmae', result: join(out, 'eval-finetune.json'),
      argv: ['evaluate', this.dir('teacher'), '--method', 'finetune', '--data', this.scale.data, '--steps', `${f.steps}`, '--batch', `${f.batch}`,
        '--max-val', `${this.scale.features.maxVal}`, '--save', out, '--out', join(out, 'eval-finetune.json')],
    });
  }

  /** A student pretrained with the MAE loss alone, or by DMAE from `teacher` (a job id, default the pre-trained teacher). */
  student(kind: 'mae' | 'dmae', ratio: number, seed: number, teacher: 'teacher' | 'teacher-finetuned' = 'teacher'): Job {
    const s = this.scale.student;
    const tag = teacher === 'teacher' ? kind : 'dmae-ftteacher';
    const id = `${tag}-m${ratio}-s${seed}`, out = this.dir(id);
    const teacherPath = teacher === 'teacher' ? this.dir('teacher') : join(this.dir('teacher-finetuned'), 'finetuned.safetensors');
    return this.add({
      id, tool: 'dmae', runDir: out, result: join(out, 'config.json'),
      title: `${kind === 'mae' ? 'MAE-only' : teacher === 'teacher' ? 'DMAE' : 'DMAE (fine-tuned teacher)'} student, mask ${ratio}, seed ${seed}`,
      argv: ['train', ...(kind === 'dmae' ? ['--mode', 'dmae', '--teacher', teacherPath] : []), '--data', this.scale.data, ...sizeArgs(s), ...scheduleArgs(s),
        '--mask-ratio', `${ratio}`, '--seed', `${seed}`, '--out', out],
    });
  }

  /**
   * An evaluation of a student's encoder (or, for `head`, of a trained classifier file). Every
   * evaluation uses seed 0 (the same validation and bank subsets, head init and order), so the
   * spread over seeds is the students'.
   */
  evaluation(of: Job, metric: Metric | 'head', scratch = false): Job {
    const { features, linprobe } = this.scale;
    const dir = of.runDir ?? dirname(of.result);
    // A random-encoder baseline: the recipe's initialisation of `of`'s architecture (seed 0).
    const id = scratch ? `init.${metric}` : `${of.id}.${metric}`;
    const result = scratch ? join(this.dir('init'), `eval-${metric}.json`) : join(dir, `eval-${metric}.json`);
    const common = ['--data', this.scale.data, '--max-val', `${features.maxVal}`, '--seed', '0'];
    // Frozen features: the mean of the normed patch tokens, what the KD student's head is trained on.
    // The teacher's activations for 256 images pass lavapipe's 128 MiB buffer limit: half the batch.
    const small = of.id === 'teacher' ? ['--batch', `${linprobe.batch / 2}`] : [];
    const rest = metric === 'knn' ? ['--pool', 'mean', '--max-train', `${features.maxTrain}`, ...small]
      : metric === 'linprobe' ? ['--pool', 'mean', '--max-train', `${features.maxTrain}`, '--steps', `${linprobe.steps}`, ...(small.length ? small : ['--batch', `${linprobe.batch}`])] : [];
    const what = metric === 'head' ? join(dir, MODEL_FILE) : dir;
    return this.add({
      id, title: `${metric === 'head' ? 'its own classifier\'s' : METRIC_NAMES[metric]} accuracy of ${scratch ? `a random encoder shaped as ${of.id}` : of.id}`, tool: 'dmae', result,
      argv: ['evaluate', what, '--method', metric, ...(scratch ? ['--scratch'] : []), ...common, ...rest, '--out', result],
    });
  }

  /** A student trained from scratch on the fine-tuned teacher's soft labels, as many steps of as many images as a DMAE student. */
  kdStudent(seed: number): Job {
    const s = this.scale.student, out = this.dir(`kd-s${seed}`);
    const steps = s.steps;
    return this.add({
      id: `kd-s${seed}`, title: `logit-KD student from the fine-tuned teacher, ${steps} steps, seed ${seed}`, tool: 'dmae', result: join(out, 'eval-kd.json'),
      argv: ['kd', '--teacher', this.dir('teacher-finetuned'), '--data', this.scale.data, '--embed-dim', `${s.embedDim}`, '--depth', `${s.depth}`, '--heads', `${s.heads}`,
        '--steps', `${steps}`, '--batch', `${s.batch}`, '--lr', num(s.lr), '--warmup', `${s.warmup}`,
        '--temperature', `${this.scale.kd.temperature}`, '--soft-weight', `${this.scale.kd.softWeight}`, '--seed', `${seed}`, '--out', out],
    });
  }

  /** The training-step benchmark at the experiment's student and teacher sizes. */
  cost(): Job {
    const { image, student: s, teacher: t, cost, ratios } = this.scale;
    const cfg = (z: Sizes) => ({ ...image, embedDim: z.embedDim, depth: z.depth, numHeads: z.heads, mlpRatio: 4, decoderEmbedDim: z.decoderDim, decoderDepth: z.decoderDepth, decoderNumHeads: z.decoderHeads, normPixLoss: true });
    // The full scale's figures join the other benchmarks' results; a smoke run's stay in its work folder.
    const name = this.scale === FULL ? 'experiment-cost' : join(this.work, 'cost');
    return this.add({
      id: 'cost', title: 'step-time benchmark at these sizes', tool: 'bench', result: this.scale === FULL ? join(ROOT, 'bench/results', `${name}.json`) : `${name}.json`,
      argv: ['train', '--student', JSON.stringify(cfg(s)), '--teacher', JSON.stringify(cfg(t)), '--batch', `${cost.batch}`, '--reps', `${cost.reps}`,
        '--ratios', ratios.join(','), '--out', name],
    });
  }
}

interface EvalJson {
  accuracy: number;
  seconds?: number;
  teacherAccuracy?: number;
}

/** One experiment: the jobs it needs (in order), and its page from their results. */
interface Experiment {
  jobs(p: Plan): Job[];
  page(p: Plan, records: Map<string, JobRecord>): Promise<{ markdown: string; svg: string; summary: object; headline: string }>;
}

const accuracyOf = (j: Job): number => readJson<EvalJson>(j.result).accuracy;

function setupTable(p: Plan): string {
  const { teacher: t, student: s, features, linprobe } = p.scale;
  const size = (z: Sizes) => `${z.embedDim} wide, ${z.depth} blocks, ${z.heads} heads; decoder ${z.decoderDim} × ${z.decoderDepth}`;
  return markdownTable(['', 'setting'], [
    ['data', `built-in ${p.scale.data} (${p.scale.image.imgSize}×${p.scale.image.imgSize}×${p.scale.image.inChans}, patch ${p.scale.image.patchSize}: ${(p.scale.image.imgSize / p.scale.image.patchSize) ** 2} patches)`],
    ['teacher (MAE)', `${size(t)}; ${t.steps} steps × ${t.batch} images, lr ${t.lr}, warmup ${t.warmup}, mask 0.75, seed ${t.seed}`],
    ['student', `${size(s)}; ${s.steps} steps × ${s.batch} images, lr ${s.lr}, warmup ${s.warmup}`],
    ['student seeds', p.seeds.join(', ')],
    ['features', `frozen encoder, every patch visible: the mean of the normed patch tokens; ${features.maxTrain} training images (a fixed seeded subset), all ${features.maxVal} validation images; evaluation seed 0 for every student`],
    ['k-NN', 'k = 20, cosine similarity, votes weighted exp(sim / 0.07)'],
    ['linear probe', `non-affine BatchNorm + Linear, AdamW, ${linprobe.steps} steps × ${linprobe.batch}`],
  ]);
}

function commandsSection(jobs: Job[], records: Map<string, JobRecord>): string {
  const total = jobs.reduce((s, j) => s + (records.get(j.id)?.seconds ?? 0), 0);
  const lines = jobs.map((j) => `# ${j.id} — ${j.title} (${seconds(records.get(j.id)?.seconds ?? NaN)}${records.get(j.id)?.adopted ? ', adopted finished run' : ''})\n${commandOf(j)}`);
  return `## Commands\n\nEvery job, in order, with its wall-clock time (${seconds(total)} in all; jobs shared with other experiments ran once):\n\n\`\`\`sh\n${lines.join('\n')}\n\`\`\``;
}

function machineLine(p: Plan): string {
  const cfgPath = join(p.dir('teacher'), 'config.json');
  const adapter = existsSync(cfgPath) ? readJson<{ adapter?: string }>(cfgPath).adapter : undefined;
  return `Machine: ${availableParallelism()} CPU cores, WebGPU adapter ${adapter ?? 'unknown'}.`;
}

const head = (name: ExperimentName, claim: string, outcome: string) => `# Experiment: ${name}\n\n${EXPERIMENTS[name]}.\n\n**Claim (paper):** ${claim}\n\n**Here:** ${outcome}\n`;

const gainLine = (label: string, v: ReturnType<typeof verdict>) =>
  `${label}: ${v.verdict} (${v.meanGain >= 0 ? '+' : ''}${(100 * v.meanGain).toFixed(1)} points on average; ahead on ${v.wins} of ${v.pairs} seeds)`;

const dmaeVsMae: Experiment = {
  jobs(p) {
    const jobs: Job[] = [p.teacher()];
    for (const seed of p.seeds) {
      for (const kind of ['mae', 'dmae'] as const) {
        const s = p.student(kind, 0.75, seed);
        jobs.push(s, ...FROZEN.map((m) => p.evaluation(s, m)));
      }
    }
    // Reference points: the teacher itself, and the students' architecture untrained.
    jobs.push(...FROZEN.map((m) => p.evaluation(p.teacher(), m)), ...FROZEN.map((m) => p.evaluation(p.student('mae', 0.75, p.seeds[0]), m, true)));
    return jobs;
  },
  async page(p, records) {
    const metrics = FROZEN;
    const acc = (kind: 'mae' | 'dmae', m: Metric) => p.seeds.map((s) => accuracyOf(p.evaluation(p.student(kind, 0.75, s), m)));
    const rows: Point[] = [];
    for (const kind of ['mae', 'dmae'] as const) for (const m of metrics) acc(kind, m).forEach((a, i) => rows.push({ method: kind === 'mae' ? 'MAE only' : 'DMAE', metric: METRIC_NAMES[m], seed: p.seeds[i], accuracy: a }));
    const verdicts = Object.fromEntries(metrics.map((m) => [m, verdict(acc('dmae', m), acc('mae', m))]));
    const teacherAcc = (m: Metric) => accuracyOf(p.evaluation(p.teacher(), m));
    const initAcc = (m: Metric) => accuracyOf(p.evaluation(p.student('mae', 0.75, p.seeds[0]), m, true));
    const table = markdownTable(['encoder', ...metrics.map((m) => `${METRIC_NAMES[m]} %`)], [
      ...(['mae', 'dmae'] as const).map((k) => [
        k === 'mae' ? 'student, MAE loss alone' : 'student, DMAE (MAE loss + L1 to the teacher\'s features)', ...metrics.map((m) => pctSpread(spread(acc(k, m)))),
      ]),
      ['the student untrained (the recipe\'s initialisation, seed 0)', ...metrics.map((m) => pct(initAcc(m)))],
      [`the teacher (${p.scale.teacher.embedDim} wide, ${p.scale.teacher.depth} blocks, ${p.scale.teacher.steps} MAE steps)`, ...metrics.map((m) => pct(teacherAcc(m)))],
    ]);
    const headline = metrics.map((m) => gainLine(`DMAE beats MAE alone (${METRIC_NAMES[m]})`, verdicts[m])).join('; ');
    const outcome = metrics.map((m) => gainLine(`DMAE vs MAE alone, ${METRIC_NAMES[m]}`, verdicts[m])).join('; ') + '.';
    const svg = await renderSvg(dotsWithSpread('DMAE vs MAE alone: accuracy over seeds', rows, { group: 'method', facet: 'metric', value: 'accuracy', axis: 'accuracy', percent: true }));
    const jobs = this.jobs(p);
    const markdown = [head('dmae-vs-mae', 'a small student distilled from a pre-trained MAE teacher (DMAE) beats the same student trained with the MAE loss alone (ViT-T: 66.6 % → higher, its Table 5).', outcome),
      '## Results\n\nFrozen-feature accuracy on the validation split, mean ± sd over seeds (each seed\'s value in brackets). Same student, same steps, same data order and masks per seed. The untrained student and the teacher are reference points (one value each).\n', table,
      '\n![DMAE vs MAE alone](dmae-vs-mae.svg)\n', '## Setup\n', setupTable(p), `\n${machineLine(p)}\n`, commandsSection(jobs, records)].join('\n');
    return {
      markdown, svg, headline,
      summary: {
        accuracy: { mae: Object.fromEntries(metrics.map((m) => [m, spread(acc('mae', m))])), dmae: Object.fromEntries(metrics.map((m) => [m, spread(acc('dmae', m))])) },
        untrained: Object.fromEntries(metrics.map((m) => [m, initAcc(m)])), teacher: Object.fromEntries(metrics.map((m) => [m, teacherAcc(m)])), verdicts,
      },
    };
  },
};

const dmaeVsKd: Experiment = {
  jobs(p) {
    const jobs: Job[] = [p.teacher(), p.teacherFinetuned()];
    for (const seed of p.seeds) {
      const d = p.student('dmae', 0.75, seed), f = p.student('dmae', 0.75, seed, 'teacher-finetuned'), kd = p.kdStudent(seed);
      for (const s of [d, f, kd]) jobs.push(s, ...FROZEN.map((m) => p.evaluation(s, m)));
      jobs.push(p.evaluation(kd, 'head'));
    }
    return jobs;
  },
  async page(p, records) {
    const students = {
      dmae: { label: 'DMAE, pre-trained teacher', job: (s: number) => p.student('dmae', 0.75, s), how: `${p.scale.student.steps} DMAE steps (mask 0.75): MAE loss + L1 to the pre-trained teacher's block-kT features` },
      ft: { label: 'DMAE, fine-tuned teacher', job: (s: number) => p.student('dmae', 0.75, s, 'teacher-finetuned'), how: 'the same, the teacher being the fine-tuned encoder' },
      kd: { label: 'logit KD, fine-tuned teacher', job: (s: number) => p.kdStudent(s), how: `${p.scale.student.steps} steps on full images: ${1 - p.scale.kd.softWeight} · CE(labels) + ${p.scale.kd.softWeight} · τ² · KL(teacher ‖ student), τ = ${p.scale.kd.temperature}` },
    };
    const acc = (k: keyof typeof students, m: Metric) => p.seeds.map((s) => accuracyOf(p.evaluation(students[k].job(s), m)));
    const kdHead = p.seeds.map((s) => accuracyOf(p.evaluation(p.kdStudent(s), 'head')));
    const teacherFt = accuracyOf(p.teacherFinetuned());
    const trainTime = (k: keyof typeof students) => spread(p.seeds.map((s) => records.get(students[k].job(s).id)?.seconds ?? NaN));
    const rows: Point[] = [];
    for (const k of ['dmae', 'ft', 'kd'] as const) for (const m of FROZEN) acc(k, m).forEach((a, i) => rows.push({ method: students[k].label, metric: METRIC_NAMES[m], seed: p.seeds[i], accuracy: a }));
    const v = (other: 'ft' | 'kd') => Object.fromEntries(FROZEN.map((m) => [m, verdict(acc('dmae', m), acc(other, m))]));
    const vFt = v('ft'), vKd = v('kd');
    const table = markdownTable(['student', 'how it is trained', ...FROZEN.map((m) => `${METRIC_NAMES[m]} %`), 'training time'],
      (['dmae', 'ft', 'kd'] as const).map((k) => [students[k].label, students[k].how, ...FROZEN.map((m) => pctSpread(spread(acc(k, m)))), seconds(trainTime(k).mean)]));
    const headline = `${gainLine('DMAE beats logit KD from the fine-tuned teacher (linear probe)', vKd.linprobe)}; ${gainLine('the pre-trained teacher beats the fine-tuned one as DMAE\'s teacher (linear probe)', vFt.linprobe)}`;
    const outcome = `${FROZEN.map((m) => gainLine(`DMAE vs logit KD, ${METRIC_NAMES[m]}`, vKd[m])).join('; ')}; ${FROZEN.map((m) => gainLine(`pre-trained vs fine-tuned teacher under DMAE, ${METRIC_NAMES[m]}`, vFt[m])).join('; ')}. ` +
      `The fine-tuned teacher reaches ${pct(teacherFt)} % with its own head; the KD students' own heads ${pctSpread(spread(kdHead))} %.`;
    const svg = await renderSvg(dotsWithSpread('Distilling the pre-trained vs the fine-tuned teacher', rows, { group: 'method', facet: 'metric', value: 'accuracy', axis: 'accuracy', percent: true }));
    const markdown = [head('dmae-vs-kd', 'distilling the pre-trained MAE teacher beats distilling a fine-tuned teacher (ViT-L → ViT-B: 84.0 % vs 82.8 % fine-tuned).', outcome),
      '## Results\n\nFrozen-feature accuracy of each student\'s encoder on the validation split, mean ± sd over seeds (each seed in brackets); every student takes the same number of optimiser steps of the same batch size from the same initialisation seed. The KD student is trained with labels (its soft and hard targets), the DMAE students never see one.\n', table,
      `\nThe KD students' own classifier heads: ${pctSpread(spread(kdHead))} % on the same validation images.\n`,
      '\n![DMAE vs KD](dmae-vs-kd.svg)\n', '## Setup\n', setupTable(p),
      `\nThe fine-tuned teacher: the MAE teacher fine-tuned with labels for ${p.scale.teacherFinetune.steps} steps × ${p.scale.teacherFinetune.batch} (global pool, fc_norm, head; layer decay 0.75), then ${pct(teacherFt)} % on the validation images. As DMAE's teacher its blocks serve unchanged (its final norm is not used).\n`,
      `${machineLine(p)}\n`, commandsSection(this.jobs(p), records)].join('\n');
    return { markdown, svg, headline, summary: { accuracy: Object.fromEntries((['dmae', 'ft', 'kd'] as const).map((k) => [k, Object.fromEntries(FROZEN.map((m) => [m, spread(acc(k, m))]))])), kdHead: spread(kdHead), teacherFinetuned: teacherFt, verdicts: { kd: vKd, finetunedTeacher: vFt } } };
  },
};

const maskRatio: Experiment = {
  jobs(p) {
    const jobs: Job[] = [p.teacher()];
    for (const r of p.scale.ratios) {
      for (const seed of p.seeds) {
        const s = p.student('dmae', r, seed);
        jobs.push(s, p.evaluation(s, 'knn'), p.evaluation(s, 'linprobe'));
      }
    }
    return jobs;
  },
  async page(p, records) {
    const L = (p.scale.image.imgSize / p.scale.image.patchSize) ** 2;
    const metrics = ['knn', 'linprobe'] as const;
    const acc = (r: number, m: Metric) => p.seeds.map((s) => accuracyOf(p.evaluation(p.student('dmae', r, s), m)));
    const rows: Point[] = [];
    for (const r of p.scale.ratios) for (const m of metrics) acc(r, m).forEach((a, i) => rows.push({ maskRatio: r, metric: METRIC_NAMES[m], seed: p.seeds[i], accuracy: a }));
    const trainTime = (r: number) => spread(p.seeds.map((s) => records.get(p.student('dmae', r, s).id)?.seconds ?? NaN));
    const table = markdownTable(['mask ratio', 'visible patches', ...metrics.map((m) => `${METRIC_NAMES[m]} %`), 'training time'],
      p.scale.ratios.map((r) => [`${r}`, `${lenKeepFor(L, r)} of ${L}`, ...metrics.map((m) => pctSpread(spread(acc(r, m)))), seconds(trainTime(r).mean)]));
    const lo = p.scale.ratios[0], hi = p.scale.ratios[p.scale.ratios.length - 1];
    const drop = metrics.map((m) => `${METRIC_NAMES[m]} ${pct(spread(acc(lo, m)).mean)} % at ${lo} → ${pct(spread(acc(hi, m)).mean)} % at ${hi}`).join(', ');
    const headline = `accuracy from mask ${lo} to ${hi}: ${drop}`;
    const svg = await renderSvg(linesWithSpread('DMAE student accuracy against the masking ratio', rows, { x: 'maskRatio', xTitle: 'masking ratio', series: 'metric', value: 'accuracy', axis: 'accuracy' }));
    const markdown = [head('mask-ratio', 'DMAE holds up at extreme masking: 95 % (about 10 visible patches of 196) 83.6 %, 98 % (4) 82.4 %, against 84.0 % at 75 %.', `${headline}.`),
      '## Results\n\nFrozen-feature accuracy of the DMAE student on the validation split, mean ± sd over seeds (each seed in brackets); the same teacher, steps and evaluation at every ratio.\n', table,
      '\n![accuracy against masking ratio](mask-ratio.svg)\n', '## Setup\n', setupTable(p), `\n${machineLine(p)}\n`, commandsSection(this.jobs(p), records)].join('\n');
    return { markdown, svg, headline, summary: { accuracy: Object.fromEntries(p.scale.ratios.map((r) => [r, Object.fromEntries(metrics.map((m) => [m, spread(acc(r, m))]))])) } };
  },
};

interface BenchTrain {
  adapter: string;
  date: string;
  command: string;
  ratios: Record<string, number>;
  figures: { what: string; maskRatio: number; medianMs: number; visible: number }[];
  setup: { teacher: { stopBlock: number; fullBlocksRun: number } };
}

const cost: Experiment = {
  jobs: (p) => [p.cost()],
  async page(p, records) {
    const job = p.cost(), b = readJson<BenchTrain>(job.result);
    const fig = (what: string, r: number) => b.figures.find((f) => f.what === what && f.maskRatio === r);
    const rows: Point[] = [];
    const names: Record<string, string> = { mae_step: 'MAE alone', dmae_step: 'DMAE, teacher to kT', dmae_full_teacher_step: 'DMAE, whole teacher', kd_full_image_step: 'logit KD, full image' };
    for (const r of p.scale.ratios) for (const w of Object.keys(names)) rows.push({ contender: names[w], maskRatio: `mask ${r}`, ms: fig(w, r)?.medianMs ?? NaN });
    const table = markdownTable(['mask ratio', 'visible', 'MAE ms', 'DMAE (kT) ms', 'DMAE (whole teacher) ms', 'KD (full image) ms', 'DMAE / MAE', 'DMAE / KD', 'kT / whole-teacher DMAE step', 'teacher forward kT / whole: time (FLOPs)'],
      p.scale.ratios.map((r) => [`${r}`, `${fig('mae_step', r)?.visible}`, ...Object.keys(names).map((w) => (fig(w, r)?.medianMs ?? NaN).toFixed(0)),
        `${b.ratios[`dmae_vs_mae_step_time_m${r}`]}`, `${b.ratios[`dmae_vs_kd_full_image_step_time_m${r}`]}`, `${b.ratios[`partial_vs_full_teacher_dmae_step_time_m${r}`]}`,
        `${b.ratios[`partial_vs_full_teacher_forward_time_m${r}`]} (${b.ratios[`partial_vs_full_teacher_forward_flops_m${r}`]})`]));
    const r0 = p.scale.ratios[0], rN = p.scale.ratios[p.scale.ratios.length - 1];
    const headline = `a DMAE step costs ${b.ratios[`dmae_vs_kd_full_image_step_time_m${r0}`]}× (mask ${r0}) to ${b.ratios[`dmae_vs_kd_full_image_step_time_m${rN}`]}× (mask ${rN}) of a full-image KD step and ${b.ratios[`dmae_vs_mae_step_time_m${r0}`]}× to ${b.ratios[`dmae_vs_mae_step_time_m${rN}`]}× of a MAE step; ` +
      `the teacher's forward to kT takes ${b.ratios[`partial_vs_full_teacher_forward_time_m${r0}`]}× the whole teacher's time (its FLOPs: ${b.ratios[`partial_vs_full_teacher_forward_flops_m${r0}`]}×), so stopping at kT makes the DMAE step ${b.ratios[`partial_vs_full_teacher_dmae_step_time_m${r0}`]}× of the whole-teacher one at mask ${r0}`;
    const svg = await renderSvg(dotsWithSpread('Time per training step (median, ms)', rows.map((x) => ({ ...x })), { group: 'contender', facet: 'maskRatio', value: 'ms', axis: 'ms per step', zero: true }));
    const { stopBlock, fullBlocksRun } = b.setup.teacher;
    const markdown = [head('cost', 'DMAE is cheap: the teacher sees only the visible patches and runs only its first blocks.', `${headline}.`),
      `## Results\n\nMedian GPU time of one whole training step (forward, backward, AdamW: one submit), batch ${p.scale.cost.batch}, the contenders interleaved in one run (\`npm run bench -- train\` at these sizes; the teacher stops after block ${stopBlock} of ${fullBlocksRun}). The KD step is the baseline of dmae-vs-kd: the student as a classifier on every patch, trained on the soft labels of the teacher run as a fine-tuned classifier through all its blocks on the full image; it does not mask, so its time is the same at every ratio. Adapter: ${b.adapter}; ${b.date}.\n`,
      table, '\n![time per step](cost.svg)\n',
      `On 2 shared CPU cores the absolute times are noisy; the ratios come from one interleaved run. The full JSON, with every sample: \`${relative(ROOT, job.result)}\`.\n`,
      '## Setup\n', setupTable(p), `\n${machineLine(p)}\n`, commandsSection(this.jobs(p), records)].join('\n');
    return { markdown, svg, headline, summary: { ratios: b.ratios, figures: b.figures, adapter: b.adapter } };
  },
};

const REGISTRY: Record<ExperimentName, Experiment> = { 'dmae-vs-mae': dmaeVsMae, 'dmae-vs-kd': dmaeVsKd, 'mask-ratio': maskRatio, cost };

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

export interface ExperimentOptions {
  names: ExperimentName[];
  scale: keyof typeof SCALES;
  seeds: number[];
  work: string;
  out: string;
  dryRun?: boolean;
  say?: (line: string) => void;
}

export async function runExperiments(o: ExperimentOptions): Promise<{ pages: string[] }> {
  const say = o.say ?? ((l: string) => process.stdout.write(`${l}\n`));
  const plan = new Plan(SCALES[o.scale], o.seeds, o.work);
  // Teacher first, then each experiment's jobs in order, each job once.
  const ordered = new Map<string, Job>();
  for (const n of o.names) for (const j of REGISTRY[n].jobs(plan)) ordered.set(j.id, j);
  const jobs = [...ordered.values()];
  if (o.dryRun) {
    for (const j of jobs) say(`# ${j.id}: ${j.title}\n${commandOf(j)}`);
    return { pages: [] };
  }
  const runner = new JobRunner(o.work, say);
  const t0 = performance.now();
  for (const [i, j] of jobs.entries()) await runner.run(j, `[${i + 1}/${jobs.length}]`);
  // Pages also know the wall time of jobs run by earlier invocations.
  for (const j of plan.jobs.values()) {
    const rp = join(o.work, 'jobs', `${j.id}.json`);
    if (!runner.records.has(j.id) && existsSync(rp)) runner.records.set(j.id, readJson<JobRecord>(rp));
  }
  mkdirSync(o.out, { recursive: true });
  const pages: string[] = [];
  for (const n of o.names) {
    const page = await REGISTRY[n].page(plan, runner.records);
    writeFileSync(join(o.out, `${n}.md`), `${page.markdown}\n`);
    writeFileSync(join(o.out, `${n}.svg`), page.svg);
    writeFileSync(join(o.out, `${n}.json`), `${JSON.stringify({ experiment: n, scale: o.scale, seeds: o.seeds, date: new Date().toISOString(), headline: page.headline, ...page.summary }, null, 2)}\n`);
    pages.push(join(o.out, `${n}.md`));
    say(`${n}: ${page.headline}\n  → ${join(o.out, `${n}.md`)}`);
  }
  writeIndex(o.out);
  const reused = jobs.filter((j) => runner.reused.has(j.id)).length;
  say(`experiments done in ${seconds((performance.now() - t0) / 1000)}: ${jobs.length - reused} jobs run, ${reused} done before`);
  return { pages };
}

/** <out>/README.md: each experiment written so far, with its headline. */
function writeIndex(out: string): void {
  const rows = (Object.keys(EXPERIMENTS) as ExperimentName[]).filter((n) => existsSync(join(out, `${n}.json`))).map((n) => {
    const j = readJson<{ headline: string; seeds: number[]; date: string; scale: string }>(join(out, `${n}.json`));
    return [`[${n}](${n}.md)`, EXPERIMENTS[n], j.headline, `${j.seeds.join(', ')}`, j.date.slice(0, 10)];
  });
  const text = `# Results\n\nWritten by \`npm run dmae -- experiment <name>\` (see \`npm run dmae -- experiment --help\`); each page has its exact commands, seeds, sizes and wall-clock times.\n\n${markdownTable(['experiment', 'what', 'outcome', 'seeds', 'date'], rows)}\n`;
  writeFileSync(join(out, 'README.md'), text);
}

export async function experimentCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { seeds: { type: 'string' }, scale: { type: 'string' }, work: { type: 'string' }, out: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  });
  const [name, ...extra] = positionals;
  if (!name) throw new Error(`Name an experiment: ${Object.keys(EXPERIMENTS).join(', ')} or all (npm run dmae -- experiment --help).`);
  if (extra.length) throw new Error(`One experiment name (or all), not ${positionals.join(' ')}.`);
  const names = name === 'all' ? (Object.keys(EXPERIMENTS) as ExperimentName[]) : [name as ExperimentName];
  if (!(name === 'all' || name in EXPERIMENTS)) throw new Error(`No experiment "${name}": ${Object.keys(EXPERIMENTS).join(', ')} or all.`);
  const scale = (values.scale ?? 'full') as keyof typeof SCALES;
  if (!(scale in SCALES)) throw new Error(`--scale ${scale}: full or smoke.`);
  const seeds = (values.seeds ?? '0,1,2').split(',').map((s) => Number(s.trim()));
  if (seeds.some((s) => !Number.isInteger(s) || s < 0) || new Set(seeds).size !== seeds.length) throw new Error(`--seeds ${values.seeds}: distinct non-negative integers, comma-separated (e.g. 0,1,2).`);
  const work = values.work ?? (scale === 'smoke' ? 'runs/smoke' : 'runs/experiments');
  const out = values.out ?? (scale === 'smoke' ? join(work, 'results') : 'docs/results');
  await runExperiments({ names, scale, seeds, work, out, dryRun: values['dry-run'] });
  return 0;
}
