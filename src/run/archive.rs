//! Run zips: a run's files ([`crate::run::format`]) in one `.zip`, written by Export run and
//! `wgpt export-run`, read by Import run and `wgpt train --resume run.zip`. A zip from elsewhere
//! is untrusted input like any other file: before anything is decompressed, every entry's name
//! (no absolute paths, no `..`, files at the top or in one folder as `zip -r run.zip out/`
//! makes them, each once), its method (stored or deflate), its declared sizes (under a cap per
//! file and in all, consistent with the method) and the number of entries are checked; while
//! decompressing, no entry may produce more than it declared, and its CRC must match. Each
//! refusal says what is wrong and what to do. A run of wgpt's own model type carries its code
//! (configuration_wgpt.py, modeling_wgpt.py, deflated) for transformers; reading leaves those
//! entries alone, as config.json says what they are.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::checkpoint::STATE_FILE;
use crate::data::MAX_CORPUS_BYTES;
use crate::hf::peft;
use crate::run::format::{RunFiles, CORPUS_FILE, METRICS_FILE, MODEL_FILE, RUN_FILES};
use crate::{Error, Result};

/// The most entries a run zip may have: its six files (eight with wgpt's code files) with room
/// for a few extras (a loss chart, folders, an archiver's metadata), far below what a zip bomb of
/// many entries needs.
pub const MAX_ENTRIES: usize = 64;

/// The most a run zip may unpack to in all: what the page's wasm (4 GiB) can hold with the zip.
pub const MAX_TOTAL_BYTES: u64 = 3 << 30;

/// Deflate's best ratio is 1032:1 (a run of one byte); an entry declaring more is lying.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The largest each file of a run may be.
fn max_bytes(name: &str) -> u64 {
    match name {
        // GPT-2 124M's weights are 0.5 GB, its two AdamW moments 1 GB
        // a LoRA adapter of rank 256 on every product of GPT-2 124M is 151 MB
        MODEL_FILE | STATE_FILE | peft::TENSORS_FILE => 2 << 30,
        CORPUS_FILE => MAX_CORPUS_BYTES,
        METRICS_FILE => 256 << 20,
        _ => 64 << 20, // config.json, tokenizer.json (GPT-2's is 1.4 MB)
    }
}

fn zip_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Format(format!("{what} is not a readable zip file ({e}); export the run again"))
}

/// A zip of `files` (name, bytes): the safetensors files stored (they hardly compress), the
/// text deflated.
pub fn write(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let fail = |e: &dyn std::fmt::Display| Error::Format(format!("cannot write the run zip: {e}"));
    for (name, bytes) in files {
        let method =
            if name.ends_with(".safetensors") { CompressionMethod::Stored } else { CompressionMethod::Deflated };
        let options =
            SimpleFileOptions::default().compression_method(method).large_file(bytes.len() as u64 >= u32::MAX as u64);
        zip.start_file(*name, options).map_err(|e| fail(&e))?;
        zip.write_all(bytes).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// An entry's name split into its folder ("" at the top) and file name, or why it is refused.
fn split_name(what: &str, name: &str) -> Result<(String, String)> {
    let refuse = |why: &str| {
        Err(Error::Format(format!(
            "{what} holds an entry named {name:?}, {why}; a run zip holds its files at the top or in one folder. \
             Nothing was unpacked"
        )))
    };
    if name.contains('\0') {
        return refuse("with a NUL byte");
    }
    let name = name.replace('\\', "/");
    let parts: Vec<&str> = name.split('/').collect();
    if name.starts_with('/') || parts[0].len() == 2 && parts[0].ends_with(':') {
        return refuse("an absolute path");
    }
    if parts.contains(&"..") {
        return refuse("which points outside the folder it unpacks to (\"..\")");
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty() && *p != ".").collect();
    match parts.as_slice() {
        [file] => Ok((String::new(), file.to_string())),
        [folder, file] => Ok((folder.to_string(), file.to_string())),
        _ => Ok((name.clone(), String::new())), // deeper: not one of the run's files
    }
}

/// Reads a run zip (`what` names it in errors), checking it as the module docs say.
pub fn read(what: &str, bytes: &[u8]) -> Result<RunFiles> {
    RunFiles::from_named(what, read_entries(what, bytes, &RUN_FILES)?)
}

/// The entries of a zip named `names` (at the top or in one folder), by name, checked as a run
/// zip's are (the module docs); the others are left alone. A LoRA run's zip also holds its
/// adapter's files, and an adapter zip only those.
pub fn read_entries(what: &str, bytes: &[u8], names: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| zip_error(what, e))?;
    let wanted = run_entries(what, &mut zip, names)?;
    let mut files = BTreeMap::new();
    for (name, (i, size)) in wanted {
        let entry = zip.by_index(i).map_err(|e| zip_error(what, e))?;
        let mut out = Vec::new();
        entry.take(size + 1).read_to_end(&mut out).map_err(|e| {
            Error::Format(format!("{what}: {name} is corrupt ({e}); export the run again. Nothing was unpacked"))
        })?;
        if out.len() as u64 != size {
            return Err(Error::Format(format!(
                "{what}: {name} declares {size} bytes but unpacks to {}{}: the zip is corrupt. Nothing was unpacked",
                if out.len() as u64 > size { "more" } else { "" },
                if out.len() as u64 > size { String::new() } else { out.len().to_string() }
            )));
        }
        files.insert(name, out);
    }
    Ok(files)
}

/// The entries named `names` among the zip's, by name: (index, declared size), every one
/// checked before anything is decompressed; everything else is left alone.
fn run_entries(
    what: &str,
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    names: &[&str],
) -> Result<BTreeMap<String, (usize, u64)>> {
    if zip.len() > MAX_ENTRIES {
        return Err(Error::Format(format!(
            "{what} has {} entries; a run zip has its 6 files (at most {MAX_ENTRIES} entries are read). Nothing was \
             unpacked",
            zip.len()
        )));
    }
    let mut wanted: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut folder: Option<String> = None;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| zip_error(what, e))?;
        let name = entry.name().map_err(|e| zip_error(what, e))?.into_owned();
        let (dir, file) = split_name(what, &name)?;
        if entry.is_dir() || dir == "__MACOSX" || !names.contains(&file.as_str()) {
            continue;
        }
        if folder.get_or_insert_with(|| dir.clone()) != &dir {
            return Err(Error::Format(format!(
                "{what} holds run files in more than one folder ({:?} and {dir:?}); zip one run's folder. Nothing was \
                 unpacked",
                folder.unwrap_or_default()
            )));
        }
        let size = entry.size();
        check_entry(what, &file, size, entry.compressed_size(), entry.compression(), entry.encrypted())?;
        total += size;
        if total > MAX_TOTAL_BYTES {
            return Err(Error::Format(format!(
                "{what} declares more than {MAX_TOTAL_BYTES} bytes unpacked in all, more than a run may be. Nothing \
                 was unpacked"
            )));
        }
        if wanted.insert(file.clone(), (i, size)).is_some() {
            return Err(Error::Format(format!("{what} holds {file} twice; zip one run")));
        }
    }
    Ok(wanted)
}

/// Checks one run file's entry by what it declares: its unpacked `size` under the cap for
/// `file`, consistent with its `packed` size and `method` (stored or deflate), no password.
fn check_entry(
    what: &str,
    file: &str,
    size: u64,
    packed: u64,
    method: CompressionMethod,
    encrypted: bool,
) -> Result<()> {
    let cap = max_bytes(file);
    if size > cap {
        return Err(Error::Format(format!(
            "{what}: {file} declares {size} bytes unpacked, more than a run's {file} may be ({cap} bytes). \
             Nothing was unpacked"
        )));
    }
    match method {
        CompressionMethod::Stored if size == packed => {}
        CompressionMethod::Deflated if size <= packed.saturating_mul(MAX_DEFLATE_RATIO) + 1024 => {}
        CompressionMethod::Stored | CompressionMethod::Deflated => {
            return Err(Error::Format(format!(
            "{what}: {file} declares {size} bytes unpacked from {packed} packed, which its method ({method}) cannot \
                 do: the zip is corrupt or a zip bomb. Nothing was unpacked"
        )))
        }
        other => {
            return Err(Error::Format(format!(
                "{what}: {file} is compressed with {other}; wgpt reads stored and deflated entries (what zip and \
                 Export run write)"
            )))
        }
    }
    if encrypted {
        return Err(Error::Format(format!("{what}: {file} is encrypted; zip the run without a password")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four checkpoint files of no real run: enough for the archive's own checks.
    fn run_files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("config.json", b"{}".to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
            ("model.safetensors", vec![7; 100]),
            ("training_state.safetensors", vec![0; 5000]),
            (
                "metrics.jsonl",
                b"{\"iter\":1,\"loss\":2.5,\"lr\":0.001,\"tokens_per_sec\":1.0,\"ms_per_step\":2.0}\n".to_vec(),
            ),
            ("corpus.txt", b"some text\n".repeat(50)),
        ]
    }

    fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let named: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        write(&named).unwrap()
    }

    fn refused(what: &str, zip: &[u8], needles: &[&str]) {
        let err = read("run.zip", zip).err().unwrap_or_else(|| panic!("{what}: accepted")).to_string();
        println!("{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {err:?} lacks {n:?}");
        }
    }

    #[test]
    fn a_written_zip_reads_back_at_the_top_or_in_one_folder() {
        let files = run_files();
        let back = read("run.zip", &zip_of(&files)).unwrap();
        assert_eq!(back.checkpoint.model, files[2].1);
        assert_eq!(back.checkpoint.state, files[3].1);
        assert_eq!(back.metrics.records().len(), 1);
        assert_eq!(back.corpus.as_deref().map(str::len), Some(500));
        let in_folder: Vec<(String, Vec<u8>)> = files.iter().map(|(n, b)| (format!("out/{n}"), b.clone())).collect();
        let in_folder: Vec<(&str, Vec<u8>)> = in_folder.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let mut extras = in_folder.clone();
        extras.push(("out/loss.png", vec![1, 2, 3]));
        extras.push(("__MACOSX/out/._config.json", vec![0]));
        assert_eq!(read("run.zip", &zip_of(&extras)).unwrap().checkpoint.model, files[2].1);
    }

    #[test]
    fn hostile_names_and_layouts_are_refused() {
        let mut files = run_files();
        files.push(("../evil.sh", b"rm -rf".to_vec()));
        refused("traversal", &zip_of(&files), &["\"../evil.sh\"", "outside", "Nothing was unpacked"]);
        let mut files = run_files();
        files[0].0 = "/etc/config.json";
        refused("absolute", &zip_of(&files), &["absolute path"]);
        let mut files = run_files();
        files.push(("other/config.json", b"{}".to_vec()));
        refused("two folders", &zip_of(&files), &["more than one folder"]);
        let many: Vec<(String, Vec<u8>)> = (0..3000).map(|i| (format!("f{i}"), vec![])).collect();
        let many: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        refused("thousands of entries", &zip_of(&many), &["3000 entries", "at most 64"]);
        refused("not a zip", b"PK\x03\x04 and then nothing", &["not a readable zip"]);
        let mut files = run_files();
        files.remove(3);
        refused("a missing file", &zip_of(&files), &["lacks training_state.safetensors"]);
    }

    #[test]
    fn lying_sizes_and_corrupt_entries_are_refused() {
        let zip = zip_of(&run_files());
        // the central directory entry of training_state.safetensors (stored, 5000 bytes): declare 4 GiB
        let at = |zip: &[u8], name: &str| {
            let sig = b"PK\x01\x02";
            (0..zip.len() - 46).find(|&i| zip[i..i + 4] == *sig && zip[i + 46..].starts_with(name.as_bytes())).unwrap()
        };
        let mut huge = zip.clone();
        let cd = at(&huge, "training_state.safetensors");
        huge[cd + 24..cd + 28].copy_from_slice(&(3u32 << 30).to_le_bytes());
        refused("a huge declared size", &huge, &["declares 3221225472 bytes", "Nothing was unpacked"]);
        // the model's CRC in the central directory and in the local header
        let mut bad = zip.clone();
        let cd = at(&bad, "model.safetensors");
        let local = u32::from_le_bytes(bad[cd + 42..cd + 46].try_into().unwrap()) as usize;
        for crc in [cd + 16, local + 14] {
            bad[crc] ^= 0xFF;
        }
        refused("a corrupt entry", &bad, &["model.safetensors is corrupt"]);
        // a deflated corpus claiming far more than deflate can make of its bytes
        let mut bomb = zip.clone();
        let cd = at(&bomb, "corpus.txt");
        bomb[cd + 24..cd + 28].copy_from_slice(&(100u32 << 20).to_le_bytes());
        refused("a ratio past deflate's", &bomb, &["cannot do", "zip bomb"]);
    }

    /// The fuzz target's seeds (fuzz/make_seeds.py, made by Python's zipfile): the good ones
    /// read, each near miss is refused for its own reason.
    #[test]
    fn the_fuzz_seeds_read_as_their_names_say() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/run_zip");
        let read_seed = |name: &str| read(name, &std::fs::read(dir.join(name)).unwrap());
        for good in ["deflated", "stored_in_folder"] {
            let files = read_seed(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(files.corpus.is_some() && files.metrics.records().len() == 1, "{good}");
        }
        for (bad, why) in [("traversal", "outside"), ("missing_state", "lacks"), ("lying_size", "declares 3221225472")]
        {
            let err = read_seed(bad).err().unwrap_or_else(|| panic!("{bad} was accepted")).to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
