import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeTorchCheckFiles } from '../../scripts/torch-export/cases';
import { testGpu } from '../helpers';

/** Debian's python3-torch, when installed (CI installs it only if .ci/run asks; the test skips otherwise). */
const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

describe('PyTorch loads the exports (scripts/torch-export/check_export.py)', () => {
  it.skipIf(!hasTorch)('full MAE/DMAE safetensors load strict and give the engine\'s losses (reference and GPU); the timm file has timm\'s names and tokens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'torch-export-'));
    try {
      await writeTorchCheckFiles(dir, await testGpu());
      const out = execFileSync('/usr/bin/python3', ['scripts/torch-export/check_export.py', dir], { encoding: 'utf8' });
      expect(out).toMatch(/MAE loss: .*float64 reference.* OK/);
      expect(out).toMatch(/MAE loss: .*WebGPU model.* OK/);
      expect(out).toMatch(/DMAE loss: .*WebGPU model.* OK/);
      expect(out).toMatch(/DMAE loss: .* OK/);
      expect(out).toMatch(/names match timm's, shapes match/);
      expect(out).toMatch(/ALL OK/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
