
// ---- prelude/grid.wgsl, joined by shaders/src/lib.rs ----
// The flat index of a thread in a 1-D grid of workgroups of 256, folded into y past 65535
// workgroups (engine::grid_1d lays out that grid).
fn flat_index(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * 256u + lid;
}
