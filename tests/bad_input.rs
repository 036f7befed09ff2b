//! Bad input through the CLI: every case exits with code 2 (or succeeds where the behaviour is
//! documented), prints a message saying what is wrong, and never panics. The hostile files are
//! made here from a small random model saved as an HF directory.
#![cfg(not(target_arch = "wasm32"))] // native only: processes, files and /proc

mod common;

use std::path::{Path, PathBuf};

use wgpt::model::{Gpt2Config, Weights};
use wgpt::tokenizer::Tokenizer;

/// Runs wgpt; (exit code, stdout, stderr).
fn wgpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().expect("run wgpt");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Asserts a clean refusal: exit code 2, no panic, and every `needles` in the message.
fn refused(what: &str, args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = wgpt(args);
    println!("{what}: {}", stderr.lines().last().unwrap_or(""));
    assert!(!stderr.contains("panicked"), "{what}: wgpt panicked: {stderr}");
    assert_eq!(code, Some(2), "{what}: expected exit code 2, got {code:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{what}: the message lacks {n:?}: {stderr}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpt-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TEXT: &str = "a small corpus of plain words, repeated to be long enough.\n";

/// A valid HF directory of a random 1-layer model with a char tokenizer.
fn model_dir(dir: &Path) {
    let tok = Tokenizer::char_level(TEXT).unwrap();
    let cfg = Gpt2Config {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 8,
        vocab_size: tok.vocab_size(),
        arch: wgpt::model::Arch::GPT2,
    };
    wgpt::hf::dir::save(dir, &Weights::random(cfg, 1), Some(&tok)).unwrap();
}

/// A copy of the model directory with `file` replaced by `bytes`.
fn with_file(name: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let dir = scratch(name);
    model_dir(&dir);
    std::fs::write(dir.join(file), bytes).unwrap();
    dir
}

/// How a test rewrites one tensor: (name, shape, values) to (dtype, shape, bytes).
type Rewrite<'a> = &'a dyn Fn(&str, &[usize], &[f32]) -> (safetensors::Dtype, Vec<usize>, Vec<u8>);

/// A safetensors file: the header JSON `header` and `data` bytes after it.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend(header.as_bytes());
    v.extend(data);
    v
}

#[test]
fn corpus_rows() {
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = scratch("corpus");
    let path = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let empty = path("empty.txt", b"");
    refused("empty corpus", &["train", "--data", &empty, "--out", dir.to_str().unwrap()], &["empty.txt", "is empty"]);
    let short = path("short.txt", b"hello there");
    refused(
        "corpus shorter than the context needs",
        &["train", "--data", &short, "--out", dir.to_str().unwrap()],
        &["needs at least", "smaller block size"],
    );
    let binary = path("image.png", &[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0x00, 0x10]);
    refused(
        "binary corpus",
        &["train", "--data", &binary, "--out", dir.to_str().unwrap()],
        &["image.png", "not UTF-8"],
    );
    let controls = path("controls.txt", &[b'a', 0x01, 0x02, 0x03, b'b', 0x04, 0x05, 0x06, 0x07, 0x08]);
    refused("control characters", &["train", "--data", &controls, "--out", dir.to_str().unwrap()], &["looks binary"]);
    // 200 MB (sparse): refused with the limit, before anything is read
    let big = dir.join("big.txt");
    std::fs::File::create(&big).unwrap().set_len(200_000_000).unwrap();
    refused(
        "a 200 MB corpus",
        &["train", "--data", big.to_str().unwrap()],
        &["big.txt", "190.7 MiB", "at most 128 MiB"],
    );
    let missing = dir.join("nope.txt");
    refused("missing file", &["train", "--data", missing.to_str().unwrap()], &["nope.txt"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_directory_rows() {
    if common::shared_kernels().is_none() {
        return;
    }
    let good = scratch("good");
    model_dir(&good);
    let (code, stdout, stderr) = wgpt(&["forward", "--model", good.to_str().unwrap(), "--text", "a small"]);
    assert_eq!(code, Some(0), "the untouched directory works: {stderr}");
    assert!(stdout.contains("rank"), "{stdout}");
    let st = std::fs::read(good.join("model.safetensors")).unwrap();

    let forward = |dir: &Path| {
        vec!["forward".to_string(), "--model".into(), dir.display().to_string(), "--ids".into(), "1,2".into()]
    };
    let check = |what: &str, dir: PathBuf, needles: &[&str]| {
        let args = forward(&dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(what, &args, needles);
        let _ = std::fs::remove_dir_all(&dir);
    };
    check(
        "truncated safetensors",
        with_file("trunc", "model.safetensors", &st[..st.len() / 2]),
        &["model.safetensors"],
    );
    check("empty safetensors", with_file("empty", "model.safetensors", b""), &["model.safetensors"]);
    // a header length of 2^64 - 1: must be refused without trying to allocate it
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    check("huge header length", with_file("huge", "model.safetensors", &huge), &["model.safetensors"]);
    let past_end = safetensors_bytes(r#"{"wte.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#, &[0; 16]);
    check("offsets past the end", with_file("pastend", "model.safetensors", &past_end), &["model.safetensors"]);
    let overlap = safetensors_bytes(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
    );
    check("overlapping tensors", with_file("overlap", "model.safetensors", &overlap), &["model.safetensors"]);
    let not_json = safetensors_bytes("{not json", &[]);
    check("garbage header", with_file("garbage", "model.safetensors", &not_json), &["model.safetensors"]);

    // a valid file with a wrong dtype and one with a wrong shape, from the real tensors
    let (weights, _) = wgpt::hf::dir::load(&good).unwrap();
    let specs = weights.config.param_specs();
    let rewrite = |name: &str, f: Rewrite| {
        let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = specs
            .iter()
            .zip(&weights.tensors)
            .map(|((n, shape), data)| {
                let (dtype, shape, bytes) = f(n, shape, data);
                (format!("transformer.{n}"), dtype, shape, bytes)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned
            .iter()
            .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        with_file(name, "model.safetensors", &safetensors::serialize(views, None).unwrap())
    };
    let f32s = |d: &[f32]| bytemuck::cast_slice::<f32, u8>(d).to_vec();
    let dtype = rewrite("dtype", &|n, s, d| {
        if n == "h.0.attn.c_attn.weight" {
            (safetensors::Dtype::I32, s.to_vec(), f32s(d))
        } else {
            (safetensors::Dtype::F32, s.to_vec(), f32s(d))
        }
    });
    check("wrong dtype", dtype, &["model.safetensors", "h.0.attn.c_attn.weight", "I32"]);
    let shape = rewrite("shape", &|n, s, d| {
        let s = if n == "h.0.mlp.c_fc.weight" { vec![s[1], s[0]] } else { s.to_vec() };
        (safetensors::Dtype::F32, s, f32s(d))
    });
    check("transposed weight", shape, &["h.0.mlp.c_fc.weight"]);

    // config.json
    let cfg = std::fs::read_to_string(good.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    json.as_object_mut().unwrap().remove("n_embd");
    check("config without n_embd", with_file("noembd", "config.json", json.to_string().as_bytes()), &["n_embd"]);
    json["n_embd"] = serde_json::json!("sixteen");
    check("config with a string n_embd", with_file("strembd", "config.json", json.to_string().as_bytes()), &["n_embd"]);
    check("config not JSON", with_file("cfgjunk", "config.json", b"n_layer = 1"), &["config.json"]);

    // tokenizer.json
    let sample = |dir: &Path| {
        vec!["sample".to_string(), "--model".into(), dir.display().to_string(), "--prompt".into(), "a".into()]
    };
    let bad_tok = with_file("badtok", "tokenizer.json", b"{\"model\": 42}");
    let args = sample(&bad_tok);
    refused("malformed tokenizer.json", &args.iter().map(String::as_str).collect::<Vec<_>>(), &["tokenizer.json"]);
    let big = Tokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap();
    let big_tok = with_file("bigtok", "tokenizer.json", big.to_json().unwrap().as_bytes());
    let args = sample(&big_tok);
    refused(
        "tokenizer larger than the model's vocabulary",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["tokenizer has", "vocab_size"],
    );

    // parity on hostile files
    let parity_junk = good.join("junk.safetensors");
    std::fs::write(&parity_junk, &huge).unwrap();
    refused("parity on a hostile file", &["parity", parity_junk.to_str().unwrap()], &["junk.safetensors"]);
    std::fs::write(&parity_junk, &st).unwrap();
    refused(
        "parity on a model file (not a parity file)",
        &["parity", parity_junk.to_str().unwrap()],
        &["junk.safetensors"],
    );
    let _ = std::fs::remove_dir_all(&good);
}

#[test]
fn limits_and_prompt_rows() {
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = scratch("limits");
    let corpus = dir.join("c.txt");
    std::fs::write(&corpus, TEXT.repeat(200)).unwrap();
    // logits (B, T, V) far past any storage binding: refused before training, with the numbers
    refused(
        "batch past the device's limits",
        &[
            "train",
            "--data",
            corpus.to_str().unwrap(),
            "--preset",
            "gpt2",
            "--tokenizer",
            "char",
            "--batch-size",
            "100000",
        ],
        &["device limits", "bytes", "use a smaller model, batch or context"],
    );
    // a model past the device's limits (a 4 GiB c_fc in each of 200 layers: 644 billion
    // parameters) is refused from its shape at once, before its weights are drawn on the host
    // (which took minutes and ran the machine out of memory)
    let out = dir.join("huge-run");
    let huge = ["--n-layer", "200", "--n-embd", "16384", "--n-head", "128", "--block-size", "8"];
    let corpus = corpus.to_str().unwrap();
    let start = std::time::Instant::now();
    let args =
        [&["train", "--data", corpus, "--tokenizer", "char", "--out", out.to_str().unwrap()], &huge[..]].concat();
    refused("a model past the device's limits", &args, &["device limits", "h.0.attn.c_attn.weight needs a"]);
    let seconds = start.elapsed().as_secs_f64();
    println!("refused in {seconds:.2} s");
    assert!(seconds < 5.0, "the refusal took {seconds:.1} s: the weights were drawn before the check");
    assert!(!out.exists(), "nothing written for a run that never was");
    model_dir(&dir);
    // the same shape in a model directory's config.json: refused before its weights are read
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    (json["n_layer"], json["n_embd"], json["n_head"]) = (200.into(), 16384.into(), 128.into());
    let big = with_file("bigcfg", "config.json", json.to_string().as_bytes());
    for command in ["sample", "forward"] {
        let args = [command, "--model", big.to_str().unwrap(), "--ids", "1"];
        let args = if command == "sample" { [&args[..3], &["--prompt", "a"]].concat() } else { args.to_vec() };
        refused(&format!("{command} on a config past the device's limits"), &args, &["device limits"]);
    }
    let _ = std::fs::remove_dir_all(&big);
    // a prompt longer than the context (block 8) keeps its last 8 tokens, with a note
    let (code, stdout, stderr) = wgpt(&[
        "sample",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        TEXT,
        "--max-new-tokens",
        "3",
        "--temperature",
        "0",
    ]);
    assert_eq!(code, Some(0), "a long prompt is handled: {stderr}");
    assert!(stderr.contains("using its last 8 tokens"), "{stderr}");
    assert!(stdout.starts_with(TEXT), "{stdout}");
    // characters outside a char tokenizer's vocabulary are dropped; none left is an error
    refused(
        "prompt of unknown characters",
        &["sample", "--model", dir.to_str().unwrap(), "--prompt", "ZZZ"],
        &["none of the prompt's characters", r"(it knows \n ,.abcdefghilmnoprstuw)"],
    );
    let (code, _, stderr) =
        wgpt(&["sample", "--model", dir.to_str().unwrap(), "--prompt", "a ZZZ small", "--max-new-tokens", "2"]);
    assert_eq!(code, Some(0), "unknown characters among known ones are dropped: {stderr}");
    assert!(stderr.contains("were dropped"), "{stderr}");
    refused("top-p out of range", &["sample", "--model", dir.to_str().unwrap(), "--top-p", "0"], &["top_p"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// tokenizer.json files that made the tokenizers crate panic (found by `cargo fuzz run
/// tokenizer`, and a Precompiled normalizer with a garbage charsmap): an error naming the file,
/// no panic.
#[test]
fn hostile_tokenizer_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    for name in ["tokenizer-invalid-utf8-in-decoder.json", "tokenizer-precompiled-garbage.json"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let err = wgpt::tokenizer::Tokenizer::from_bytes(name, &bytes).err().expect("refused");
        println!("{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

/// A zip of `entries` (name, bytes), stored.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The offset of `name`'s central directory header in `zip`.
fn central_entry(zip: &[u8], name: &str) -> usize {
    (0..zip.len() - 46)
        .find(|&i| zip[i..i + 4] == *b"PK\x01\x02" && zip[i + 46..].starts_with(name.as_bytes()))
        .unwrap_or_else(|| panic!("no {name} in the zip"))
}

/// A run zip is untrusted input: `wgpt train --resume` refuses each hostile one with exit code 2
/// and a message, writes nothing (the --out folder is not even made), and never replaces a run
/// that is already there.
#[test]
fn hostile_run_zips() {
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = scratch("zips");
    let corpus = dir.join("c.txt");
    std::fs::write(&corpus, TEXT.repeat(50)).unwrap();
    let run = dir.join("run");
    let args = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "2"];
    let (code, _, stderr) = wgpt(
        &[
            &["train", "--data", corpus.to_str().unwrap(), "--out", run.to_str().unwrap()],
            &args[..],
            &["--max-iters", "2"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let good = dir.join("good.zip");
    let (code, stdout, stderr) = wgpt(&["export-run", run.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    println!("{}", stdout.trim());
    let zip = std::fs::read(&good).unwrap();
    let files: Vec<(String, Vec<u8>)> = wgpt::run::format::RUN_FILES
        .iter()
        .map(|name| (name.to_string(), std::fs::read(run.join(name)).unwrap()))
        .collect();

    let try_zip = |what: &str, bytes: &[u8], needles: &[&str]| {
        let path = dir.join("hostile.zip");
        std::fs::write(&path, bytes).unwrap();
        let out = dir.join("unpacked");
        refused(what, &["train", "--resume", path.to_str().unwrap(), "--out", out.to_str().unwrap()], needles);
        assert!(!out.exists(), "{what}: something was written to {}", out.display());
    };
    let mut with = files.clone();
    with.push(("../evil.sh".into(), b"rm -rf ~".to_vec()));
    try_zip("a path out of the folder", &zip_of(&with), &["\"../evil.sh\"", "outside"]);
    let absolute: Vec<(String, Vec<u8>)> = files.iter().map(|(n, b)| (format!("/etc/wgpt/{n}"), b.clone())).collect();
    try_zip("absolute paths", &zip_of(&absolute), &["absolute path"]);
    let mut huge = zip.clone();
    let cd = central_entry(&huge, "training_state.safetensors");
    huge[cd + 24..cd + 28].copy_from_slice(&(3u32 << 30).to_le_bytes());
    try_zip("a huge declared size", &huge, &["declares 3221225472 bytes", "more than a run's"]);
    let many: Vec<(String, Vec<u8>)> = (0..5000).map(|i| (format!("junk/{i}.txt"), vec![])).collect();
    try_zip("thousands of entries", &zip_of(&many), &["5000 entries"]);
    let missing: Vec<(String, Vec<u8>)> =
        files.iter().filter(|(n, _)| n != "training_state.safetensors").cloned().collect();
    try_zip("a missing file", &zip_of(&missing), &["lacks training_state.safetensors", "wgpt export-run"]);
    let mut corrupt = zip.clone();
    let cd = central_entry(&corrupt, "model.safetensors");
    let local = u32::from_le_bytes(corrupt[cd + 42..cd + 46].try_into().unwrap()) as usize;
    let data = local + 30 + u16::from_le_bytes(corrupt[local + 26..local + 28].try_into().unwrap()) as usize;
    corrupt[data + 100] ^= 0xFF; // a byte of the stored weights: the CRC no longer matches
    try_zip("a corrupt entry", &corrupt, &["model.safetensors is corrupt"]);
    try_zip("not a zip", &std::fs::read(&corpus).unwrap(), &["not a readable zip"]);

    // a good zip over a run that is there already: refused, the run left as it was
    let before: Vec<Vec<u8>> = files.iter().map(|(n, _)| std::fs::read(run.join(n)).unwrap()).collect();
    refused(
        "unpacking over a run",
        &["train", "--resume", good.to_str().unwrap(), "--out", run.to_str().unwrap()],
        &["holds a run already", "--out NEWDIR"],
    );
    let after: Vec<Vec<u8>> = files.iter().map(|(n, _)| std::fs::read(run.join(n)).unwrap()).collect();
    assert!(before == after, "the run in the way was changed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Architecture flags: unknown names and bad combinations are refused by name, before anything
/// trains.
#[test]
fn architecture_rows() {
    refused(
        "an unknown norm",
        &["train", "--norm", "batchnorm"],
        &["unknown norm \"batchnorm\"", "layernorm, rmsnorm"],
    );
    refused("architecture flags on a resume", &["train", "--resume", "nowhere", "--arch", "llama"], &["--resume"]);
    if common::shared_kernels().is_none() {
        return;
    }
    let dir = scratch("arch");
    let corpus = dir.join("c.txt");
    std::fs::write(&corpus, TEXT.repeat(20)).unwrap();
    let c = corpus.to_str().unwrap();
    let small = ["train", "--data", c, "--preset", "tiny", "--max-iters", "1"];
    let with = |extra: &[&str]| -> Vec<String> { small.iter().chain(extra).map(|s| s.to_string()).collect() };
    let refused = |what: &str, args: &[String], needles: &[&str]| {
        refused(what, &args.iter().map(String::as_str).collect::<Vec<_>>(), needles)
    };
    refused(
        "an unknown arch",
        &with(&["--arch", "mamba"]),
        &["unknown arch \"mamba\"", "gpt2, llama, qwen3, speedrun"],
    );
    refused("kv heads not dividing the heads", &with(&["--n-kv-head", "3"]), &["n_kv_head (3) must divide n_head (2)"]);
    refused("a negative softcap", &with(&["--logit-softcap=-2"]), &["logit_softcap = -2"]);
    refused("an empty MLP", &with(&["--mlp", "swiglu", "--intermediate-size", "0"]), &["intermediate_size = 0"]);
    model_dir(&dir);
    refused("architecture flags on --init", &with(&["--init", dir.to_str().unwrap(), "--untied"]), &["--init"]);
    let _ = std::fs::remove_dir_all(&dir);
}
