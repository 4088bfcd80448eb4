/** bench/lib.ts kernelProfile: where a step's GPU time goes, per kernel, from timed repetitions. */
import { describe, expect, it } from 'vitest';
import { kernelProfile } from '../../bench/lib';

describe('kernelProfile', () => {
  it('takes each kernel\'s median over repetitions (0 where one lacks it), as a share of the step, slowest first, ties by name', () => {
    const reps = [
      new Map([['matmul:matmul_vec4', 6e6], ['adamw:adamw_step_vec4', 1e6], ['layernorm:layernorm_forward', 2e6]]),
      new Map([['matmul:matmul_vec4', 8e6], ['adamw:adamw_step_vec4', 3e6]]),
      new Map([['matmul:matmul_vec4', 7e6], ['adamw:adamw_step_vec4', 2e6], ['layernorm:layernorm_forward', 2e6]]),
    ];
    expect(kernelProfile(reps, 10)).toEqual([
      { kernel: 'matmul:matmul_vec4', ms: 7, shareOfStep: 0.7 },
      { kernel: 'adamw:adamw_step_vec4', ms: 2, shareOfStep: 0.2 },
      { kernel: 'layernorm:layernorm_forward', ms: 2, shareOfStep: 0.2 },
    ]);
  });

  it('is empty without repetitions', () => {
    expect(kernelProfile([], 10)).toEqual([]);
  });
});
