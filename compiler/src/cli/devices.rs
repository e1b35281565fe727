//! `kiln devices`: the Vulkan devices able to run Kiln's shaders, and which one `--backend vulkan` uses.

use super::CliError;
use kiln::backend::spirv::{self, DeviceKind};
use std::io::Write;

pub fn devices(out: &mut dyn Write) -> Result<(), CliError> {
    // `devices()` lists the preferred device first: the one `Device::open_best` (and so `--backend vulkan`) opens.
    let found = spirv::devices().map_err(|e| {
        CliError::new(format!(
            "{e}\n(`--backend vulkan` needs a Vulkan 1.1 loader and device, e.g. Mesa's lavapipe: \
             apt install mesa-vulkan-drivers)"
        ))
    })?;
    if found.is_empty() {
        return Err(CliError::new(
            "no Vulkan device: the loader lists no device with Vulkan 1.1 and a compute queue",
        ));
    }
    let header = ["", "index", "name", "type", "api", "f64", "subgroup"];
    let rows: Vec<[String; 7]> = found
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (major, minor, patch) = d.api_version;
            [
                if i == 0 { "*" } else { "" }.to_string(),
                d.index.to_string(),
                d.name.clone(),
                kind_name(d.kind).to_string(),
                format!("{major}.{minor}.{patch}"),
                if d.float64 { "yes" } else { "no" }.to_string(),
                // The subgroup size, where workgroup reductions may use subgroup shuffles.
                if d.subgroup_shuffle {
                    d.subgroup_size.to_string()
                } else {
                    "-".to_string()
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: [&str; 7]| -> std::io::Result<()> {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(header)?;
    for row in &rows {
        line(row.each_ref().map(String::as_str))?;
    }
    // The limits the code generator respects (`DeviceLimits`; see kiln::backend::spirv's "Device limits").
    writeln!(out)?;
    for d in &found {
        let l = &d.limits;
        let [wx, wy, wz] = l.max_workgroup_size;
        let [cx, cy, cz] = l.max_workgroups;
        writeln!(
            out,
            "device {} limits: {} storage buffers per shader, {} invocations per workgroup ({wx}x{wy}x{wz}), \
             {cx}x{cy}x{cz} workgroups, {} B shared memory, {} B per buffer, {} B push constants (unused)",
            d.index,
            l.max_storage_buffers,
            l.max_workgroup_invocations,
            l.max_shared_memory_bytes,
            l.max_storage_buffer_range,
            l.max_push_constants_bytes
        )?;
    }
    writeln!(
        out,
        "\n* --backend vulkan uses device {} ({})",
        found[0].index, found[0].name
    )?;
    Ok(())
}

fn kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::DiscreteGpu => "discrete gpu",
        DeviceKind::IntegratedGpu => "integrated gpu",
        DeviceKind::VirtualGpu => "virtual gpu",
        DeviceKind::Cpu => "cpu (software)",
        DeviceKind::Other => "other",
    }
}
