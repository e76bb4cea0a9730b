//! Shards: one run over a share of the inputs, for job arrays on Slurm or Kubernetes, and
//! `summarize merge` to join their reports. An input belongs to shard `hash(id) mod N`, where
//! the hash is of the input's identity (its URL, path or JSONL id), never of its line number,
//! so a list that grows keeps every earlier input in the shard it had.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Env;

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    fn new(index: u64, count: u64, from: &str) -> Result<Shard> {
        if count == 0 {
            bail!("{from}: the shard count must be at least 1");
        }
        if index >= count {
            bail!("{from}: shard {index} does not exist in {count} shards (they are numbered 0 to {})", count - 1);
        }
        Ok(Shard { index, count })
    }

    /// Whether the input with this id is in the shard.
    pub fn keeps(&self, id: &str) -> bool {
        let digest = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first) % self.count == self.index
    }
}

/// `--shard K/N`.
pub fn parse(text: &str) -> Result<Shard> {
    let from = format!("--shard {text}");
    let (k, n) = text
        .split_once('/')
        .with_context(|| format!("invalid {from}: use K/N, such as 0/4 (shard K of N, from 0)"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("invalid {from}: use K/N, such as 0/4 (shard K of N, from 0)"))
    };
    Shard::new(num(k)?, num(n)?, &from)
}

/// The shard of this run: `--shard K/N`; else a Slurm job array's task
/// (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`); else, with
/// `--shards N`, a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`. `None`: every input.
pub fn resolve(flag: Option<&str>, shards: Option<u64>, env: &dyn Env) -> Result<Option<Shard>> {
    if let Some(text) = flag {
        return parse(text).map(Some);
    }
    let num = |name: &str| -> Result<Option<u64>> {
        env.var(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{name}={v} is not a whole number"))
            })
            .transpose()
    };
    if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).with_context(|| {
            format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
        })?;
        return Shard::new(index, count, "the Slurm job array (SLURM_ARRAY_TASK_*)").map(Some);
    }
    if let Some(count) = shards {
        let Some(index) = num("JOB_COMPLETION_INDEX")? else {
            bail!("--shards {count} needs JOB_COMPLETION_INDEX (set in a Kubernetes Indexed Job), or use --shard K/{count}");
        };
        return Shard::new(index, count, "JOB_COMPLETION_INDEX with --shards").map(Some);
    }
    Ok(None)
}

/// What `summarize merge` made of the shard reports.
pub struct Merged {
    pub records: Vec<Map<String, Value>>,
    /// Inputs of the list with no record in any report.
    pub missing: Vec<String>,
    /// Ids that more than one report had (the `ok` one, or the last, was kept).
    pub duplicates: usize,
}

/// Joins JSONL reports: one record per id (an `ok` record wins over an error, then the later
/// report), in the order of `order` (the inputs' ids) when given, records of ids outside it
/// after them in the order read.
pub fn merge(reports: &[(String, String)], order: Option<&[String]>) -> Result<Merged> {
    let mut by_id: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut seen_order: Vec<String> = Vec::new();
    let mut duplicates = 0;
    for (name, text) in reports {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(line) else {
                if i + 1 == text.lines().count() && !text.ends_with('\n') {
                    continue; // a line torn by a crash: its input is re-run by --resume
                }
                bail!(
                    "{name}:{}: not a JSON record; merge reads summarize's JSONL reports",
                    i + 1
                );
            };
            let Some(id) = rec.get("id").and_then(Value::as_str).map(str::to_string) else {
                bail!("{name}:{}: a record without an \"id\"", i + 1);
            };
            let ok = rec.get("status").and_then(Value::as_str) == Some("ok");
            match by_id.get(&id) {
                None => {
                    seen_order.push(id.clone());
                    by_id.insert(id, rec);
                }
                Some(prev) => {
                    duplicates += 1;
                    let prev_ok = prev.get("status").and_then(Value::as_str) == Some("ok");
                    if ok || !prev_ok {
                        by_id.insert(id, rec);
                    }
                }
            }
        }
    }
    let mut records = Vec::with_capacity(by_id.len());
    let mut missing = Vec::new();
    for id in order.unwrap_or_default() {
        match by_id.remove(id) {
            Some(r) => records.push(r),
            None => missing.push(id.clone()),
        }
    }
    // The rest in the order read (ids the list had are gone from `by_id` already).
    for id in seen_order {
        if let Some(r) = by_id.remove(&id) {
            records.push(r);
        }
    }
    Ok(Merged {
        records,
        missing,
        duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(Vec<(&'static str, &'static str)>);
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_split_every_input_exactly_once_and_stay_put() {
        let ids: Vec<String> = (0..1000)
            .map(|i| format!("https://example.com/{i}"))
            .collect();
        let shards: Vec<Shard> = (0..4).map(|k| Shard { index: k, count: 4 }).collect();
        let mut sizes = [0usize; 4];
        for id in &ids {
            let owners: Vec<usize> = (0..4).filter(|&k| shards[k].keeps(id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| n > 200 && n < 300), "{sizes:?}");
        // The same id, the same shard, whatever else the list holds.
        assert_eq!(
            shards[0].keeps(&ids[7]),
            Shard { index: 0, count: 4 }.keeps(&ids[7])
        );
    }

    #[test]
    fn the_shard_comes_from_the_flag_slurm_or_kubernetes() {
        let none = Vars(vec![]);
        assert_eq!(resolve(None, None, &none).unwrap(), None);
        assert_eq!(
            resolve(Some("1/4"), None, &none).unwrap(),
            Some(Shard { index: 1, count: 4 })
        );
        for bad in ["4/4", "x/4", "1", "1/0"] {
            assert!(resolve(Some(bad), None, &none).is_err(), "{bad}");
        }
        let slurm = Vars(vec![
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            resolve(None, None, &slurm).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        // The flag wins over the environment.
        assert_eq!(
            resolve(Some("0/2"), None, &slurm).unwrap(),
            Some(Shard { index: 0, count: 2 })
        );
        let k8s = Vars(vec![("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(
            resolve(None, Some(8), &k8s).unwrap(),
            Some(Shard { index: 3, count: 8 })
        );
        assert!(resolve(None, Some(8), &none).is_err());
        assert!(resolve(None, Some(2), &k8s).is_err());
    }

    #[test]
    fn merge_keeps_one_record_per_id_in_input_order() {
        let a =
            "{\"id\":\"b\",\"status\":\"error\"}\n{\"id\":\"d\",\"status\":\"ok\"}\n".to_string();
        let b = "{\"id\":\"a\",\"status\":\"ok\"}\n{\"id\":\"b\",\"status\":\"ok\"}\n{\"id\":\"x\",\"status\":\"ok\"}\n{\"id\":\"to".to_string();
        let order: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let m = merge(
            &[("a.jsonl".into(), a), ("b.jsonl".into(), b)],
            Some(&order),
        )
        .unwrap();
        let ids: Vec<&str> = m
            .records
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b", "d", "x"]);
        assert_eq!(m.records[1]["status"], "ok", "the ok record of b wins");
        assert_eq!(m.missing, ["c"]);
        assert_eq!(m.duplicates, 1);
    }
}
