/**
 * src/data in real Chromium: the built-in MNIST fetched from the page's own server with every
 * other host blocked, imports through real File objects and the browser's own image decoders
 * (folder picker, zip, IDX, CIFAR tar.gz), hostile files refused by name without hurting the
 * tab, IndexedDB persistence across a reload, an import that fails on a real quota error
 * leaving stored data alone, and the loader and decoder inside a Web Worker.
 *
 * The studio UI is not needed: the data module is bundled here (esbuild, IIFE, global
 * `DMAEData`) and added to the studio's own page, so it runs on the page's origin as the studio
 * would. Needs public/datasets/mnist.dmds.gz in the build (`npm run datasets` before `vite build`).
 */
import { expect, test, type Page } from '@playwright/test';
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { gzipSync, zipSync } from 'fflate';
import { CHROMIUM, QUIET_FLAGS } from './chromium';
import { encodeIdx } from '../src/data/formats/idx';
import { crc32 } from '../src/data/formats/archive';

// Datasets need no WebGPU: a plain Chromium keeps these tests light.
test.use({ launchOptions: { executablePath: CHROMIUM, args: QUIET_FLAGS } });

let bundle = '';
let tmp = '';

test.beforeAll(async () => {
  const out = await build({ entryPoints: ['src/data/index.ts'], bundle: true, format: 'iife', globalName: 'DMAEData', platform: 'browser', target: 'es2022', write: false, logLevel: 'warning' });
  bundle = out.outputFiles[0].text;
  tmp = mkdtempSync(join(tmpdir(), 'dmae-e2e-data-'));
});
test.afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The studio's page with the data module on it; any request to another host fails the test. */
async function openWithData(page: Page): Promise<{ offsite: string[]; errors: string[] }> {
  const offsite: string[] = [];
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1' || url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    offsite.push(url.href);
    return route.abort();
  });
  await page.goto('/');
  await page.addScriptTag({ content: bundle });
  await page.waitForFunction(() => 'DMAEData' in window);
  return { offsite, errors };
}

async function png(w: number, h: number, seed: number, channels: 3 | 4 = 3): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * channels);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 31 + seed * 57) & 0xff;
  return sharp(raw, { raw: { width: w, height: h, channels } }).png().toBuffer();
}

// The page-side types are the bundle's; the tests talk to it through `window.DMAEData`.
declare global {
  interface Window {
    DMAEData: typeof import('../src/data/index');
  }
}

test('built-in MNIST: fetched from the page’s own server, 10,000 labelled digits, fixed split, no other network', async ({ page }) => {
  const sizes: number[] = [];
  page.on('requestfinished', async (req) => {
    // Bytes on the wire (vite preview sends the .gz with Content-Encoding: gzip; the browser inflates it).
    if (req.url().includes('/datasets/mnist')) sizes.push((await req.sizes()).responseBodySize);
  });
  const { offsite, errors } = await openWithData(page);
  const r = await page.evaluate(async () => {
    const t0 = performance.now();
    const ds = await window.DMAEData.loadBuiltin('mnist');
    const counts = Array(10).fill(0);
    for (const l of ds.labels!) counts[l]++;
    const loader = new window.DMAEData.DataLoader(ds, { split: 'train', batchSize: 64, seed: 1, augment: { hflip: false } });
    const b = loader.next();
    const shapes = await window.DMAEData.loadBuiltin('shapes', { shapes: { n: 50, size: 40 } });
    return { N: ds.N, nTrain: ds.nTrain, H: ds.H, C: ds.C, counts, mean: ds.mean[0], ms: performance.now() - t0, x: b.x.length, finite: b.x.every(Number.isFinite), shapes: [shapes.N, shapes.C, shapes.H, shapes.classNames.length] };
  });
  expect(r).toMatchObject({ N: 10000, nTrain: 9000, H: 28, C: 1, x: 64 * 784, finite: true, shapes: [50, 3, 40, 7] });
  expect(r.counts.reduce((a, b) => a + b, 0)).toBe(10000);
  expect(r.mean).toBeGreaterThan(0.1);
  expect(r.mean).toBeLessThan(0.15);
  expect(r.ms).toBeLessThan(10_000);
  // The studio page fetches it once (shared by its panels); the test's own bundled copy of
  // src/data has its own cache, so at most two fetches, each the compact binary.
  await expect.poll(() => sizes.length).toBeGreaterThanOrEqual(1);
  expect(sizes.length).toBeLessThanOrEqual(2);
  for (const size of sizes) expect(size).toBeLessThan(2.5 * 2 ** 20); // not megabytes of JSON
  expect(offsite).toEqual([]);
  expect(errors).toEqual([]);
});

test('imports in the browser: a folder picker (class sub-folders), a zip, IDX .gz and a CIFAR tar.gz, decoded by the browser', async ({ page }) => {
  const { errors } = await openWithData(page);
  // A folder with class sub-folders, for <input webkitdirectory>.
  const folder = join(tmp, 'pets');
  for (const cls of ['cat', 'dog']) {
    mkdirSync(join(folder, cls), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(join(folder, cls, `${i}.png`), await png(24, 20, i + cls.length));
    writeFileSync(join(folder, cls, 'x.jpg'), await sharp(await png(24, 20, 9)).jpeg().toBuffer());
    writeFileSync(join(folder, cls, 'y.webp'), await sharp(await png(24, 20, 8)).webp({ lossless: true }).toBuffer());
  }
  await page.evaluate(() => {
    for (const [id, dir] of [['dir', true], ['files', false]] as const) {
      const input = document.createElement('input');
      input.type = 'file';
      input.id = id;
      input.multiple = true;
      if (dir) input.webkitdirectory = true;
      document.body.append(input);
    }
  });
  await page.setInputFiles('#dir', folder);
  const fromFolder = await page.evaluate(async () => {
    const input = document.getElementById('dir') as HTMLInputElement;
    const { dataset: ds } = await window.DMAEData.importBrowserFiles(window.DMAEData.sourcesFromFileList(input.files!));
    return { name: ds.name, N: ds.N, C: ds.C, H: ds.H, W: ds.W, classes: ds.classNames, labels: new Set(ds.labels).size };
  });
  expect(fromFolder).toEqual({ name: 'pets', N: 10, C: 3, H: 20, W: 24, classes: ['cat', 'dog'], labels: 2 });

  // The lossless PNG decodes to exactly the pixels sharp encoded.
  const ref = await sharp(await png(24, 20, 0 + 3)).raw().toBuffer();
  const one = await page.evaluate(async (bytes) => {
    const d = new Uint8Array(bytes);
    const ds = (await window.DMAEData.importBrowserFiles([{ path: 'one/a.png', size: d.length, read: async () => d }], { valFraction: 0 })).dataset;
    return Array.from(ds.images.subarray(0, 3)).concat(Array.from(ds.images.subarray(480, 481)));
  }, Array.from(await png(24, 20, 3)));
  expect(one).toEqual([ref[0], ref[3], ref[6], ref[1]]);

  // Loose files: a zip of images, MNIST-style IDX (gzip), CIFAR-10 binary in its tar.gz.
  const n = 12;
  const pix = Buffer.alloc(n * 784, 9);
  const labels = Buffer.from(Array.from({ length: n }, (_, i) => i % 10));
  const cifar = Buffer.alloc(5 * 3073, 77);
  for (let i = 0; i < 5; i++) cifar[i * 3073] = i;
  const tarDir = join(tmp, 'cifar');
  mkdirSync(join(tarDir, 'cifar-10-batches-bin'), { recursive: true });
  writeFileSync(join(tarDir, 'cifar-10-batches-bin', 'data_batch_1.bin'), cifar);
  const { execFileSync } = await import('node:child_process');
  execFileSync('tar', ['-czf', join(tmp, 'cifar-10-binary.tar.gz'), '-C', tarDir, 'cifar-10-batches-bin']);
  const files = [
    { name: 'shapes.zip', mimeType: 'application/zip', buffer: Buffer.from(zipSync({ 'shapes/a/1.png': await png(8, 8, 1), 'shapes/b/2.png': await png(8, 8, 2), 'shapes/b/3.png': await png(8, 8, 3) })) },
    { name: 'train-images-idx3-ubyte.gz', mimeType: 'application/gzip', buffer: Buffer.from(gzipSync(encodeIdx([n, 28, 28], pix))) },
    { name: 'train-labels-idx1-ubyte.gz', mimeType: 'application/gzip', buffer: Buffer.from(gzipSync(encodeIdx([n], labels))) },
    { name: 'cifar-10-binary.tar.gz', mimeType: 'application/gzip', buffer: (await import('node:fs')).readFileSync(join(tmp, 'cifar-10-binary.tar.gz')) },
  ];
  const results: unknown[] = [];
  for (const group of [[files[0]], [files[1], files[2]], [files[3]]]) {
    await page.setInputFiles('#files', group);
    results.push(
      await page.evaluate(async () => {
        const input = document.getElementById('files') as HTMLInputElement;
        const { dataset: ds } = await window.DMAEData.importBrowserFiles(window.DMAEData.sourcesFromFileList(input.files!));
        return [ds.source, ds.N, ds.C, ds.H, ds.classNames.length];
      }),
    );
  }
  expect(results).toEqual([
    ['images', 3, 3, 8, 2],
    ['idx', 12, 1, 28, 10],
    ['cifar-10', 5, 3, 32, 10],
  ]);

  // Drag-and-drop: a drop event's DataTransfer (files dropped loose).
  const dropped = await page.evaluate(async () => {
    const dt = new DataTransfer();
    const c = new OffscreenCanvas(6, 6);
    c.getContext('2d')!.fillRect(0, 0, 3, 3);
    const blob = await c.convertToBlob({ type: 'image/png' });
    dt.items.add(new File([blob], 'a.png', { type: 'image/png' }));
    dt.items.add(new File([blob], 'b.png', { type: 'image/png' }));
    const sources = await window.DMAEData.sourcesFromDataTransfer(dt);
    const { dataset } = await window.DMAEData.importBrowserFiles(sources);
    return [sources.map((s) => s.path).sort().join(), dataset.N, dataset.H];
  });
  expect(dropped).toEqual(['a.png,b.png', 2, 6]);
  expect(errors).toEqual([]);
});

test('hostile files: named errors, bounded time, the tab survives', async ({ page }) => {
  const { errors } = await openWithData(page);
  const small = await png(8, 8, 1);
  const huge = Buffer.from(small);
  huge.writeUInt32BE(30000, 16);
  huge.writeUInt32BE(30000, 20);
  huge.writeUInt32BE(crc32(huge.subarray(12, 29)), 29);
  const damaged = Buffer.from(small);
  damaged.fill(7, 41, damaged.length - 20);
  // A zip whose directory declares 12 × 100 MiB (the sizes a bomb declares; refused before inflating).
  const bomb = Buffer.from(zipSync(Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`z/${i}.png`, new Uint8Array(1000)]))));
  for (let p = bomb.readUInt32LE(bomb.length - 6), i = 0; i < 12; i++) {
    bomb.writeUInt32LE(100 * 2 ** 20, p + 24);
    p += 46 + bomb.readUInt16LE(p + 28) + bomb.readUInt16LE(p + 30) + bomb.readUInt16LE(p + 32);
  }
  const cases: Array<[string, Array<[string, number[]]>]> = [
    ['huge', [['big/huge.png', Array.from(huge)], ['big/ok.png', Array.from(small)]]],
    ['damaged', [['d/ok.png', Array.from(small)], ['d/bad.png', Array.from(damaged)]]],
    ['non-image', [['n/ok.png', Array.from(small)], ['n/notes.txt', Array.from(Buffer.from('hello'))]]],
    ['bomb', [['bomb.zip', Array.from(bomb)]]],
    ['truncated idx', [['train-images-idx3-ubyte', Array.from(encodeIdx([60000, 28, 28], new Uint8Array(100)))]]],
    ['empty', []],
  ];
  const got = await page.evaluate(async (cases) => {
    const out: Record<string, { code: string; message: string; ms: number }> = {};
    for (const [name, files] of cases) {
      const sources = files.map(([path, bytes]) => {
        const d = new Uint8Array(bytes);
        return { path, size: d.length, read: async () => d };
      });
      const t0 = performance.now();
      try {
        await window.DMAEData.importBrowserFiles(sources);
        out[name] = { code: 'none', message: 'imported', ms: 0 };
      } catch (e) {
        const err = e as InstanceType<typeof window.DMAEData.DatasetError>;
        out[name] = { code: e instanceof window.DMAEData.DatasetError ? err.code : `not a DatasetError: ${String(e)}`, message: err.message, ms: performance.now() - t0 };
      }
    }
    return out;
  }, cases);
  expect(got.huge).toMatchObject({ code: 'too-large', message: expect.stringMatching(/^big\/huge\.png: is 30000×30000 pixels/) });
  expect(got.damaged).toMatchObject({ code: 'corrupt', message: expect.stringMatching(/^d\/bad\.png: could not be decoded/) });
  expect(got['non-image']).toMatchObject({ code: 'not-image', message: expect.stringMatching(/^n\/notes\.txt: is not a PNG, JPEG or WebP image/) });
  expect(got.bomb).toMatchObject({ code: 'too-large', message: expect.stringMatching(/^bomb\.zip: would unpack to 1\.2 GiB/) });
  expect(got['truncated idx']).toMatchObject({ code: 'truncated', message: expect.stringMatching(/^train-images-idx3-ubyte: is cut short/) });
  expect(got.empty).toMatchObject({ code: 'empty' });
  for (const v of Object.values(got)) expect(v.ms).toBeLessThan(5000);
  expect(await page.evaluate(() => 1 + 1)).toBe(2); // still alive
  expect(errors).toEqual([]);
});

test('IndexedDB: a stored dataset survives a reload; a save that fails on a quota error leaves it untouched', async ({ page }) => {
  await openWithData(page);
  const saved = await page.evaluate(async () => {
    const store = await window.DMAEData.DatasetStore.open({ name: 'dmae-e2e' });
    for (const d of await store.list()) await store.remove(d.id);
    const ds = window.DMAEData.makeShapesDataset({ n: 40, size: 16, seed: 3 });
    const info = await store.save(ds);
    store.close();
    let sum = 0;
    for (const v of ds.images) sum = (sum * 31 + v) >>> 0;
    return { id: info.id, sum };
  });
  await page.reload();
  await page.addScriptTag({ content: bundle });
  const listed = await page.evaluate(async (id) => {
    const store = await window.DMAEData.DatasetStore.open({ name: 'dmae-e2e' });
    const list = await store.list();
    const ds = await store.load(id);
    let sum = 0;
    for (const v of ds.images) sum = (sum * 31 + v) >>> 0;
    store.close();
    return { ids: list.map((d) => d.id), N: list[0].N, classes: list[0].numClasses, bytes: list[0].bytes, thumbs: list[0].thumbnails.length, thumbBytes: list[0].thumbnails[0].rgba.length, sum };
  }, saved.id);
  expect(listed).toEqual({ ids: [saved.id], N: 40, classes: 7, bytes: 40 * 3 * 256 + 40 * 4, thumbs: 8, thumbBytes: 16 * 16 * 4, sum: saved.sum });

  // Chromium's real quota cannot be shrunk here (CDP's Storage.overrideQuotaForOrigin has no
  // effect on this headless build), so the quota error is injected twice, at the two places it
  // happens: inside the real IndexedDB transaction after the listing is written (the write of
  // the data throws QuotaExceededError), and in navigator.storage.estimate() before saving.
  const failed = await page.evaluate(async () => {
    const report = async (store: Awaited<ReturnType<typeof window.DMAEData.DatasetStore.open>>) => {
      const big = window.DMAEData.makeShapesDataset({ n: 100, size: 32, seed: 4 });
      try {
        await store.save(big);
        return { code: 'none', message: '' };
      } catch (e) {
        const err = e as InstanceType<typeof window.DMAEData.DatasetError>;
        return { code: err.code, message: err.message };
      }
    };
    const inTx = await window.DMAEData.DatasetStore.open({
      name: 'dmae-e2e',
      beforeDataWrite: () => {
        throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      },
    });
    const a = await report(inTx);
    inTx.close();
    const realEstimate = navigator.storage.estimate.bind(navigator.storage);
    navigator.storage.estimate = async () => ({ quota: 1_000_000, usage: 990_000 });
    const plain = await window.DMAEData.DatasetStore.open({ name: 'dmae-e2e' });
    const b = await report(plain);
    navigator.storage.estimate = realEstimate;
    const ids = (await plain.list()).map((d) => d.id);
    plain.close();
    return { a, b, ids };
  });
  for (const error of [failed.a, failed.b]) {
    expect(error.code).toBe('storage');
    expect(error.message).toMatch(/quota is full.*Nothing stored was changed/);
  }
  expect(failed.ids).toEqual([saved.id]); // no half-written dataset, the stored one intact
});

test('in a Web Worker: MNIST fetched, batches made, an image decoded with OffscreenCanvas', async ({ page }) => {
  await openWithData(page);
  const result = await page.evaluate(async (bundle) => {
    const code = `${bundle}
      self.onmessage = async (e) => {
        try {
          const D = self.DMAEData;
          const ds = await D.fetchMnist(e.data.base);
          const loader = new D.DataLoader(ds, { split: 'train', batchSize: 32, seed: 5, resolution: 32, channels: 3, augment: { hflip: false } });
          const batches = [];
          for (let i = 0; i < 3; i++) { const b = loader.next(); batches.push([b.x.length, b.labels.length]); }
          const c = new OffscreenCanvas(5, 4); c.getContext('2d').fillRect(0, 0, 5, 4);
          const png = new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer());
          const img = await D.importDataset([{ path: 'w/a.png', size: png.length, read: async () => png }], { decoder: D.browserDecoder });
          self.postMessage({ ok: true, batches, state: loader.getState(), img: [img.dataset.H, img.dataset.W, img.dataset.C] });
        } catch (err) { self.postMessage({ ok: false, error: String(err && err.stack || err) }); }
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
    const reply = await new Promise((resolve) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => resolve({ ok: false, error: e.message });
      worker.postMessage({ base: `${location.origin}/` });
    });
    worker.terminate();
    return reply;
  }, bundle);
  expect(result).toEqual({ ok: true, batches: [[32 * 3 * 32 * 32, 32], [32 * 3 * 32 * 32, 32], [32 * 3 * 32 * 32, 32]], state: { seed: 5, epoch: 0, position: 96 }, img: [4, 5, 1] });
});

/** The dataset panel (src/data/ui/DatasetPanel.tsx) rendered on the studio's page in its own React root. */
async function openPanel(page: Page): Promise<string[]> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  if (!panelBundle) {
    const out = await build({
      stdin: {
        contents: `
          import { createElement, useState } from 'react';
          import { createRoot } from 'react-dom/client';
          import { DatasetPanel } from './src/data/ui/DatasetPanel';
          function Host() {
            const [choice, setChoice] = useState(null);
            return createElement('div', { className: 'page' },
              createElement('p', { 'data-testid': 'choice' }, choice ? choice.kind + ':' + (choice.name || choice.id) : 'none'),
              createElement(DatasetPanel, { selected: choice, onSelect: setChoice, storeName: 'dmae-e2e-panel' }));
          }
          // The studio page mounts a dataset panel of its own: this test drives its own one alone.
          document.getElementById('root')?.remove();
          const host = document.createElement('div');
          document.body.prepend(host);
          createRoot(host).render(createElement(Host));`,
        resolveDir: process.cwd(),
        loader: 'tsx',
      },
      bundle: true,
      format: 'iife',
      platform: 'browser',
      target: 'es2022',
      jsx: 'automatic',
      define: { 'process.env.NODE_ENV': '"production"' },
      outdir: 'panel-out',
      write: false,
      logLevel: 'warning',
    });
    panelBundle = {
      js: out.outputFiles.find((f) => f.path.endsWith('.js'))!.text,
      css: out.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '',
    };
  }
  await page.goto('/');
  await page.addStyleTag({ content: panelBundle.css });
  await page.addScriptTag({ content: panelBundle.js });
  await expect(page.getByTestId('dataset-panel')).toBeVisible();
  return errors;
}
let panelBundle: { js: string; css: string } | null = null;

test('dataset panel: built-ins with samples, folder picker and drag-and-drop imports kept across a reload, bad files named', async ({ page }) => {
  const errors = await openPanel(page);
  await page.evaluate(async () => {
    // A clean slate for the panel's own database.
    await new Promise((r) => {
      const req = indexedDB.deleteDatabase('dmae-e2e-panel');
      req.onsuccess = req.onerror = req.onblocked = r;
    });
  });
  await page.reload();
  await openPanel(page);
  await expect(page.getByTestId('builtin-mnist').locator('canvas')).toHaveCount(8);
  await expect(page.getByTestId('builtin-shapes').locator('canvas')).toHaveCount(8);
  await page.getByTestId('builtin-mnist').getByRole('button', { name: 'Use' }).click();
  await expect(page.getByTestId('choice')).toHaveText('builtin:mnist');

  // The folder picker: class sub-folders.
  const folder = join(tmp, 'flowers');
  for (const cls of ['rose', 'tulip']) {
    mkdirSync(join(folder, cls), { recursive: true });
    for (let i = 0; i < 4; i++) writeFileSync(join(folder, cls, `${i}.png`), await png(30, 30, i * 3 + cls.length));
  }
  await page.getByTestId('dataset-folder').setInputFiles(folder);
  await expect(page.getByTestId('dataset-status')).toContainText('Imported flowers: 8 images');
  await expect(page.getByTestId('stored-dataset')).toHaveCount(1);
  await expect(page.getByTestId('stored-dataset').first()).toContainText('2 classes');
  await expect(page.getByTestId('stored-dataset').first().locator('canvas')).toHaveCount(8);
  await expect(page.getByTestId('choice')).toHaveText('stored:flowers');

  // Drag and drop: a zip, then a 30000×30000 PNG that must be refused by name.
  const zipBytes = Array.from(zipSync({ 'dots/a/1.png': await png(12, 12, 1), 'dots/b/2.png': await png(12, 12, 2), 'dots/b/3.png': await png(12, 12, 3) }));
  const huge = Buffer.from(await png(8, 8, 4));
  huge.writeUInt32BE(30000, 16);
  huge.writeUInt32BE(30000, 20);
  huge.writeUInt32BE(crc32(huge.subarray(12, 29)), 29);
  const drop = async (name: string, bytes: number[]) => {
    const dataTransfer = await page.evaluateHandle(([name, bytes]) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], name));
      return dt;
    }, [name, bytes] as const);
    await page.getByTestId('dataset-drop').dispatchEvent('drop', { dataTransfer });
  };
  await drop('dots.zip', zipBytes);
  await expect(page.getByTestId('stored-dataset')).toHaveCount(2);
  await drop('huge.png', Array.from(huge));
  await expect(page.getByTestId('dataset-error')).toHaveText(/^huge\.png: is 30000×30000 pixels/);
  await expect(page.getByTestId('stored-dataset')).toHaveCount(2);
  await page.screenshot({ path: test.info().outputPath('dataset-panel.png'), fullPage: true });

  // A reload lists them again without asking for the files; delete one.
  await page.reload();
  await openPanel(page);
  await expect(page.getByTestId('stored-dataset')).toHaveCount(2);
  await expect(page.getByTestId('stored-dataset').nth(1)).toContainText('dots');
  await page.getByRole('button', { name: 'Delete dots' }).click();
  await expect(page.getByTestId('stored-dataset')).toHaveCount(1);
  expect(errors).toEqual([]);
});
