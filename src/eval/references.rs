//! Reference summaries keyed by record id, from JSONL (`{"id", "reference"}`, extra fields
//! ignored, so a dataset file works as is) or CSV with `id` and `reference` columns.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Id → reference text.
pub type References = HashMap<String, String>;

pub fn load(path: &Path) -> Result<References> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read references '{shown}'"))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let refs = if is_csv {
        from_csv(&text)
    } else {
        from_jsonl(&text)
    }
    .with_context(|| format!("invalid references file '{shown}'"))?;
    if refs.is_empty() {
        bail!("references file '{shown}' holds no references; expected JSONL {{\"id\", \"reference\"}} or CSV id,reference");
    }
    Ok(refs)
}

pub fn from_jsonl(text: &str) -> Result<References> {
    let mut refs = References::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // Only two fields matter; a dataset line also carries the whole article, skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default)]
            id: serde_json::Value,
            #[serde(default)]
            reference: Option<String>,
        }
        let v: Line =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let (Some(id), Some(reference)) = (crate::input::id_from_json(&v.id), v.reference) else {
            bail!(
                "line {}: needs string fields \"id\" and \"reference\"",
                i + 1
            );
        };
        refs.insert(id, reference);
    }
    Ok(refs)
}

pub fn from_csv(text: &str) -> Result<References> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(id), Some(reference)) = (col("id"), col("reference")) else {
        bail!("the CSV header needs columns id and reference");
    };
    let mut refs = References::new();
    for row in reader.records() {
        let row = row?;
        if let (Some(i), Some(r)) = (row.get(id), row.get(reference)) {
            refs.insert(i.to_string(), r.to_string());
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv() {
        let refs = from_jsonl("{\"id\": \"a\", \"text\": \"x\", \"reference\": \"ref a\"}\n\n{\"id\": 2, \"reference\": \"two\"}\n").unwrap();
        assert_eq!(refs["a"], "ref a");
        assert_eq!(refs["2"], "two");
        assert!(from_jsonl("{\"id\": \"a\"}").is_err());
        let refs = from_csv("id,reference\na,\"line one\nline two\"\n").unwrap();
        assert_eq!(refs["a"], "line one\nline two");
        assert!(from_csv("name,text\na,b\n").is_err());
    }
}
