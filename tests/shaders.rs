//! Every WGSL file parses and validates with naga, without a GPU.

#[test]
fn every_shader_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = wgpt::kernels::SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, listed, "shaders/ and kernels::SHADERS must list the same files");
    for (name, src) in wgpt::kernels::SHADERS {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        // subgroup operations only where the file is for adapters that have them
        let caps = if *name == "matmul_subgroup.wgsl" {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        println!("{name}: {} entry points valid", module.entry_points.len());
    }
}
