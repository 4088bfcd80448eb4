/**
 * npx tsx scripts/torch-export/make-files.ts [dir]  (default runs/torch-export-check)
 * Also runs the GPU model (WebGPU through Dawn: a real GPU, else lavapipe) when an adapter is found.
 */
import { acquireNodeGpu } from '../../src/gpu/node-device';
import { writeTorchCheckFiles } from './cases';

const dir = process.argv[2] ?? 'runs/torch-export-check';
const gpu = await acquireNodeGpu().catch((e: unknown) => {
  console.warn(`no WebGPU adapter (${(e as Error).message}); case.json gets the float64 reference's losses only`);
  return undefined;
});
await writeTorchCheckFiles(dir, gpu);
gpu?.destroy();
console.log(`wrote ${dir}: mae.safetensors, dmae.safetensors, teacher.safetensors, vit.safetensors, config.json, case.json`);
process.exit(0);
