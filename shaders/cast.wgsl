// Storage conversion between f32 and f16 (and copies and zero fills at any element
// offset, where a buffer copy or clear needs whole 4-byte words):
//   convert  dst[dst_off + i] = src[src_off + i] for i < n, rounded to dst's type
//   zero     dst[dst_off + i] = 0 for i < n
// One invocation per element; elements past 65535 workgroups fold into y
// (i = gid.x + gid.y · nwg.x · 64). Dispatch (min(ceil(n / 64), 65535),
// ceil(ceil(n / 64) / 65535), 1).

struct Params {
    n: u32,
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

alias src_t = f32;
alias dst_t = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> dst: array<dst_t>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64, 1, 1)
fn convert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        dst[p.dst_off + i] = dst_t(src[p.src_off + i]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        dst[p.dst_off + i] = dst_t(0.0);
    }
}
