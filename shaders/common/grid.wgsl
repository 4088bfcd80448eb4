// Linear indices on the 2-D dispatch grids of grid2d (src/gpu/ops/common.ts).
//
// Use: `// #import common/grid`. A dispatch may need more than the 65535 workgroups one dimension
// allows, so grid2d fills x (up to 65535) and spills into y; workgroup (x, y) is number
// y·num_workgroups.x + x, in x-fastest order. The grid's last row may be partial: every kernel
// bounds-checks the index it gets.

// The workgroup's number on the grid (one row per workgroup: the row).
fn grid_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y * nwg.x + wid.x;
}

// The invocation's element: invocation `lid` (local_invocation_index, or local_invocation_id.x) of
// a 1-D workgroup of `wg` invocations, one element per invocation.
fn grid_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
  return grid_workgroup(wid, nwg) * wg + lid;
}
