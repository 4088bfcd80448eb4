// Deterministic workgroup sum, shared by every kernel that reduces inside a workgroup.
//
// Use: `// #import common/reduce`, launch the entry point with @workgroup_size(REDUCE_WG), and
// call workgroup_sum(lid, v) with lid = local_invocation_index. It returns Σ v over the
// workgroup to every invocation. The sum is a fixed tree (pairs (i, i + s) for s = WG/2, …, 1),
// so the same inputs always give the same bits — no atomics, no order that depends on timing.
//
// REDUCE_WG is an override (a power of two, at most 256) so a wrapper may pick a narrower
// workgroup for short rows; it is part of the pipeline key, and it fixes the summation order.
// workgroup_sum has barriers: call it from uniform control flow only (loops over rows indexed by
// workgroup_id are fine, they are uniform). It may be called many times in a row: the leading
// barrier keeps one call's writes from racing the previous call's final read.
// Workgroup memory: REDUCE_WG · 4 bytes (1 KiB at 256).

override REDUCE_WG: u32 = 256u;

var<workgroup> reduce_scratch: array<f32, REDUCE_WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  reduce_scratch[lid] = v;
  workgroupBarrier();
  for (var s = REDUCE_WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { reduce_scratch[lid] = reduce_scratch[lid] + reduce_scratch[lid + s]; }
    workgroupBarrier();
  }
  return reduce_scratch[0];
}
