//! Lists the adapters wgpu can see and opens the one the library would use,
//! reporting its backend, limits and the optional features in use.
//!
//! Run: `cargo run --release --example devices` (set `WGPU_BACKEND=gl` or
//! `vulkan`, `metal`, `dx12` to choose a backend).
//! Expect: one line per adapter, then the chosen adapter's report, e.g.
//! `adapter:  llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)` on a machine with
//! Mesa's lavapipe and no GPU.

use rnn_wgpu::Context;

fn main() -> Result<(), rnn_wgpu::Error> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    println!("adapters wgpu sees ({}):", adapters.len());
    for a in &adapters {
        let i = a.get_info();
        println!(
            "  {:?} {:?}: {} ({})",
            i.backend, i.device_type, i.name, i.driver_info
        );
    }
    let ctx = Context::new()?;
    println!("\nthe library uses:\n{ctx}");
    Ok(())
}
