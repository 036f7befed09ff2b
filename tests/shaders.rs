//! Every kernel module (each entry point of each file, each variant's instance) parses and
//! validates with naga, without a GPU, and its params struct at binding 0 has the size of the
//! Rust struct the host writes there.

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
    let modules = wgpt::kernels::all_modules();
    for spec in &modules {
        let label = spec.label();
        let src = spec.wgsl();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{label}: {}\n{src}", e.emit_to_string(&src)));
        // subgroup operations only where the module is for adapters that have them
        let mut caps =
            if spec.subgroups { naga::valid::Capabilities::SUBGROUP } else { naga::valid::Capabilities::empty() };
        // and f16 only in the f16 instances (adapters with shader-f16)
        if spec.f16 {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
        assert_eq!(module.entry_points.len(), 1, "{label}: one entry point per module");
        assert_eq!(module.entry_points[0].name, spec.entry, "{label}: the entry point");
        drop(info);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let params = module
            .global_variables
            .iter()
            .find(|(_, v)| v.binding.as_ref().is_some_and(|b| b.group == 0 && b.binding == 0))
            .unwrap_or_else(|| panic!("{label}: no params at binding 0"))
            .1;
        let size = layouter[params.ty].size as usize;
        assert_eq!(
            size, spec.params_size,
            "{label}: the WGSL params struct is {size} bytes, the Rust one {}",
            spec.params_size
        );
        // tensors bind from 1 in order, without gaps
        let mut bindings: Vec<u32> =
            module.global_variables.iter().filter_map(|(_, v)| v.binding.as_ref()).map(|b| b.binding).collect();
        bindings.sort();
        assert_eq!(bindings, (0..bindings.len() as u32).collect::<Vec<_>>(), "{label}: bindings 0, 1, 2, ...");
    }
    println!("{} modules valid", modules.len());
}

/// The tiled matmuls load whole tiles with whole workgroups: each invocation loads the same
/// number of vec4s of A and of B.
#[test]
fn tiles_load_evenly() {
    for t in wgpt::kernels::matmul::TILES {
        let threads = t.wgx * t.wgy;
        let (bm, bn) = t.size();
        assert_eq!(bm * t.bk / 4 % threads, 0, "{t:?}: A's tile");
        assert_eq!(t.bk * bn / 4 % threads, 0, "{t:?}: B's tile");
        assert_eq!(t.bk % 4, 0, "{t:?}: K step");
    }
}
