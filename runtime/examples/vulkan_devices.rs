//! Lists the Vulkan devices Kiln can run on, preferred first.
fn main() {
    match kiln_runtime::vulkan::devices() {
        Ok(devices) if devices.is_empty() => println!("no Vulkan device"),
        Ok(devices) => {
            for d in devices {
                println!(
                    "{}: {} ({:?}, Vulkan {}.{}.{}, f64: {}, NaN-preserving f32/f64: {:?})",
                    d.index,
                    d.name,
                    d.kind,
                    d.api_version.0,
                    d.api_version.1,
                    d.api_version.2,
                    d.float64,
                    d.preserves_nan
                );
            }
        }
        Err(e) => println!("{e}"),
    }
}
