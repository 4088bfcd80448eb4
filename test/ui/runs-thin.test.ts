import { describe, expect, it } from 'vitest';
import { thin } from '../../src/store/runs';

describe('run history thinning', () => {
  it('keeps short histories whole and long ones evenly, with the last record', () => {
    const xs = Array.from({ length: 10 }, (_, i) => i);
    expect(thin(xs, 20)).toEqual(xs);
    const long = Array.from({ length: 10_001 }, (_, i) => i);
    const t = thin(long, 2000);
    expect(t.length).toBeLessThanOrEqual(2001);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]).toBe(10_000);
    for (let i = 1; i < t.length - 1; i++) expect(t[i] - t[i - 1]).toBe(6);
  });
});
