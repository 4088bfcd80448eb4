// One row per workgroup reduced with subgroup operations, no barrier and no workgroup memory (the
// 'subgroup' row kernels: layernorm_subgroups.wgsl, loss_subgroups.wgsl). Needs `enable subgroups;`
// before the import.
//
// WebGPU does not promise how a workgroup's invocations map onto subgroups, so a row kernel works
// for any mapping: the subgroup that holds invocation 0 does the whole row, its n invocations
// striding over the row by rank (subgroupExclusiveAdd(1): dense 0..n−1, whatever the subgroup size
// or which lanes are active); every other subgroup loops over nothing, and its sums (of zeros) are
// never used for a write. The wrappers size the workgroup to the adapter's subgroup size, so
// usually the working subgroup is the whole workgroup and nothing idles.
// Use: `// #import common/subgroup_rows`.

// Which invocations work on the row, and how. Call from uniform control flow: it uses subgroup
// operations.
struct Lanes {
  lane: u32,   // this invocation's rank in its subgroup (dense 0..n−1)
  n: u32,      // invocations in its subgroup
  end: u32,    // the row's length in the working subgroup (the one holding invocation 0), 0 in the others
}

fn lanes(lid: u32, len: u32) -> Lanes {
  let works = subgroupAny(lid == 0u);
  return Lanes(subgroupExclusiveAdd(1u), subgroupAdd(1u), select(0u, len, works));
}

// A lane's vec4 of partial sums, added in a fixed order.
fn sum4(v: vec4<f32>) -> f32 {
  return (v.x + v.y) + (v.z + v.w);
}
