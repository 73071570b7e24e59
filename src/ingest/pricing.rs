//! Model prices, for spans that carry tokens but no cost.
//!
//! Built in: a small table of common models (USD per million tokens, input/output). Operators
//! override or extend it with `pricing.json` in the data directory or the rules directory:
//! `{"my-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}`. A model matches an entry
//! exactly, or by the longest entry that prefixes it (`gpt-4o-2024-08-06` → `gpt-4o`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

const BUILTIN: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("o3", 2.0, 8.0),
    ("o4-mini", 1.1, 4.4),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-opus-4", 15.0, 75.0),
    ("gemini-1.5-flash", 0.075, 0.3),
    ("gemini-2.0-flash", 0.1, 0.4),
];

impl PriceTable {
    pub fn builtin() -> Self {
        let prices = BUILTIN
            .iter()
            .map(|(m, i, o)| {
                (
                    m.to_string(),
                    Price {
                        input_per_mtok: *i,
                        output_per_mtok: *o,
                    },
                )
            })
            .collect();
        PriceTable { prices }
    }

    /// The built-in table plus the operator's `pricing.json`, if one is in `dirs`.
    pub fn load(dirs: &[&Path]) -> Result<Self, String> {
        let mut table = Self::builtin();
        if let Some(path) = dirs
            .iter()
            .map(|d| d.join("pricing.json"))
            .find(|p| p.is_file())
        {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let extra: BTreeMap<String, Price> =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e} (expected {{\"model\": {{\"input_per_mtok\": 1.0, \"output_per_mtok\": 2.0}}}})", path.display()))?;
            table.prices.extend(extra);
        }
        Ok(table)
    }

    /// Cost in USD, if the model is priced.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        let m = model.to_ascii_lowercase();
        let m = m.rsplit('/').next().unwrap_or(&m);
        let price = self.prices.get(m).or_else(|| {
            self.prices
                .iter()
                .filter(|(k, _)| m.starts_with(k.as_str()))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, p)| p)
        })?;
        Some(
            (input_tokens as f64 * price.input_per_mtok
                + output_tokens as f64 * price.output_per_mtok)
                / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_matches() {
        let t = PriceTable::builtin();
        assert_eq!(t.cost("gpt-4o", 1_000_000, 0), Some(2.5));
        assert_eq!(
            t.cost("gpt-4o-mini-2024-07-18", 0, 1_000_000),
            Some(0.6),
            "longest prefix wins"
        );
        assert_eq!(t.cost("openai/gpt-4o", 1_000_000, 0), Some(2.5));
        assert_eq!(t.cost("unknown-model", 10, 10), None);
    }

    #[test]
    fn operator_file_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pricing.json"),
            r#"{"gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}"#,
        )
        .unwrap();
        let t = PriceTable::load(&[dir.path()]).unwrap();
        assert_eq!(t.cost("gpt-4o", 1_000_000, 0), Some(1.0));
        std::fs::write(dir.path().join("pricing.json"), "nope").unwrap();
        assert!(PriceTable::load(&[dir.path()]).is_err());
    }
}
