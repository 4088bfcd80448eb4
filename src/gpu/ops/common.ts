/** Small shared pieces of the op wrappers. */
import { createTensor } from '../buffers';
import type { Tensor } from '../kernels';

const zeroTensors = new WeakMap<GPUDevice, Tensor>();

/** A 64-element zero tensor bound where a kernel declares an optional input that is absent. */
export function zeros(device: GPUDevice): Tensor {
  let t = zeroTensors.get(device);
  if (!t) zeroTensors.set(device, (t = createTensor(device, 64, 'zeros')));
  return t;
}
