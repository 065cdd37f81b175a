//! Prints a summary of a GGUF file as JSON: version, metadata (arrays shortened), the LLaMA
//! hyper-parameters where the file has them, and per tensor its type, shape and checksums of
//! its dequantized values.
//!
//! Usage: `cargo run -p gateway-import --example gguf_dump -- FILE [--no-checksums]
//! [--values TENSOR OUT.f32]… [--tokenizer DIR]`. `--values` writes a tensor's dequantized
//! values as little-endian f32; `--tokenizer` writes the rebuilt `tokenizer.json` and
//! `tokenizer_facts.json` into DIR.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gateway_core::model_dir::TOKENIZER_FILE;
use gateway_import::gguf::GgufValue;
use gateway_import::{tokenizer_from_gguf, GgufFile, ImportError, LlamaConfig};
use serde_json::{json, Map, Value};

/// Array elements shown in the summary.
const ARRAY_HEAD: usize = 8;

/// What the command line asks for.
#[derive(Default)]
struct Args {
    file: Option<PathBuf>,
    checksums: bool,
    values: Vec<(String, PathBuf)>,
    tokenizer: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        checksums: true,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--no-checksums" => args.checksums = false,
            "--values" => match (it.next(), it.next()) {
                (Some(name), Some(out)) => args.values.push((name, PathBuf::from(out))),
                _ => return Err("--values needs TENSOR and OUT".to_owned()),
            },
            "--tokenizer" => match it.next() {
                Some(dir) => args.tokenizer = Some(PathBuf::from(dir)),
                None => return Err("--tokenizer needs DIR".to_owned()),
            },
            _ if args.file.is_none() => args.file = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(args)
}

/// A metadata value for the summary: arrays as length, element type and first elements.
fn summarize(value: &GgufValue) -> Value {
    match value {
        GgufValue::Array {
            element_type,
            values,
        } => json!({
            "array": format!("{element_type:?}"),
            "len": values.len(),
            "head": values.iter().take(ARRAY_HEAD).map(GgufValue::to_json).collect::<Vec<_>>(),
        }),
        other => other.to_json(),
    }
}

/// Sum, sum of absolute values and a position-weighted sum (weights 1..=7 repeating).
fn checksums(values: &[f32]) -> Value {
    let (mut sum, mut abs, mut weighted) = (0f64, 0f64, 0f64);
    for (i, v) in values.iter().enumerate() {
        let v = f64::from(*v);
        sum += v;
        abs += v.abs();
        weighted += v * ((i % 7) + 1) as f64;
    }
    json!({"sum": sum, "abs_sum": abs, "weighted_sum": weighted})
}

fn write_json(
    path: &Path,
    value: &impl serde::Serialize,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

fn run(args: &Args, file: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let mut gguf = GgufFile::open(file)?;
    let metadata: Map<String, Value> = gguf
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), summarize(v)))
        .collect();
    let config = match LlamaConfig::from_gguf(&gguf) {
        Ok(c) => serde_json::to_value(c)?,
        Err(e) => json!({ "error": e.to_string() }),
    };
    let mut tensors = Vec::new();
    for info in gguf.tensors().to_vec() {
        let sums = if args.checksums && info.ggml_type.dequantizes() {
            checksums(&gguf.read_f32(&info.name)?)
        } else {
            Value::Null
        };
        tensors.push(json!({
            "name": info.name,
            "type": info.ggml_type.name(),
            "dims": info.dims,
            "shape": info.shape(),
            "offset": info.offset,
            "n_bytes": info.n_bytes,
            "checksums": sums,
        }));
    }
    for (name, out) in &args.values {
        let values = gguf.read_f32(name)?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out, bytes)?;
    }
    if let Some(dir) = &args.tokenizer {
        let tokenizer = tokenizer_from_gguf(&gguf)?;
        std::fs::create_dir_all(dir)?;
        write_json(&dir.join(TOKENIZER_FILE), &tokenizer.tokenizer_json)?;
        write_json(&dir.join("tokenizer_facts.json"), &tokenizer.facts)?;
    }
    Ok(json!({
        "version": gguf.version(),
        "alignment": gguf.alignment(),
        "metadata": metadata,
        "llama_config": config,
        "tensors": tensors,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(file) = args.file.clone() else {
        eprintln!(
            "usage: gguf_dump FILE [--no-checksums] [--values TENSOR OUT.f32]… [--tokenizer DIR]"
        );
        return ExitCode::from(2);
    };
    match run(&args, &file).and_then(|v| Ok(serde_json::to_string_pretty(&v)?)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Typed import errors keep their own message; say which kind it was.
            let kind = if e.downcast_ref::<ImportError>().is_some() {
                "import error"
            } else {
                "error"
            };
            eprintln!("{kind}: {e}");
            ExitCode::FAILURE
        }
    }
}
