//! `--set KEY=VALUE` overrides, applied to the text of the network file so that every
//! line of the file keeps its number in error messages.
//!
//! KEY is a dotted path; an array of tables is indexed by an element's `name` (receptors
//! by their `kind`) or by its position: `environment.ca_o_mm=1.0`,
//! `synapse_types.glu.ca.p_ref=0.3`, `synapse_types.glu.receptors.ampa.g_max_ns=0.8`,
//! `populations.exc.size=100`, `projections.0.p=0.05`. VALUE is a TOML value; a bare word
//! that is not valid TOML is taken as a string.

use std::path::Path;
use toml_edit::{DocumentMut, Item, Table, Value};

use crate::error::Error;

/// Applies each `KEY=VALUE` to `text` in order and returns the new text.
pub fn apply_overrides(text: &str, overrides: &[String], path: &Path) -> Result<String, Error> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: DocumentMut = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            // A file the full parser accepts but the editor cannot (an integer of 2^63 or
            // more) must not drop the overrides silently.
            if toml::from_str::<toml::Table>(text).is_ok() {
                return Err(Error::Override {
                    given: overrides[0].clone(),
                    reason: format!(
                        "the file cannot be edited to apply overrides ({}); write integers of 2^63 or more, such as a large seed, as strings: seed = \"18446744073709551615\"",
                        e.message().trim()
                    ),
                    path: path.to_path_buf(),
                });
            }
            // Let the normal parser report the syntax error with its location.
            return Ok(text.to_string());
        }
    };
    for given in overrides {
        apply_one(&mut doc, given).map_err(|reason| Error::Override {
            given: given.clone(),
            reason,
            path: path.to_path_buf(),
        })?;
    }
    Ok(doc.to_string())
}

fn apply_one(doc: &mut DocumentMut, given: &str) -> Result<(), String> {
    let (key, value) = given
        .split_once('=')
        .ok_or("expected KEY=VALUE, e.g. environment.ca_o_mm=1.0")?;
    let key = key.trim();
    let value = value.trim();
    let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value));
    let segs: Vec<&str> = key.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(format!("empty segment in key `{key}`"));
    }
    let mut table: &mut Table = doc.as_table_mut();
    let mut i = 0;
    loop {
        let seg = segs[i];
        let walked = segs[..=i].join(".");
        if i + 1 == segs.len() {
            if let Some(Item::Table(_)) | Some(Item::ArrayOfTables(_)) = table.get(seg) {
                return Err(format!("`{key}` is a table, not a value"));
            }
            table[seg] = Item::Value(parsed);
            return Ok(());
        }
        let item = table
            .entry(seg)
            .or_insert_with(|| Item::Table(Table::new()));
        match item {
            Item::Table(t) => {
                table = t;
                i += 1;
            }
            Item::ArrayOfTables(arr) => {
                let next = segs[i + 1];
                let idx = match next.parse::<usize>() {
                    Ok(n) if n < arr.len() => n,
                    Ok(n) => {
                        return Err(format!(
                            "`{walked}` has {} entries; index {n} is out of range",
                            arr.len()
                        ))
                    }
                    Err(_) => {
                        // Entries are named by `name`, or by `kind` (receptors).
                        let names: Vec<String> = arr
                            .iter()
                            .map(|t| {
                                t.get("name")
                                    .or_else(|| t.get("kind"))
                                    .and_then(|v| v.as_str())
                                    .map(String::from)
                                    .unwrap_or_default()
                            })
                            .collect();
                        names.iter().position(|n| n == next).ok_or_else(|| {
                            format!(
                                "`{walked}` has no entry named `{next}` (names: {})",
                                names.join(", ")
                            )
                        })?
                    }
                };
                if i + 2 == segs.len() {
                    return Err(format!("`{key}` names a whole entry; add the field to set"));
                }
                table = arr.get_mut(idx).expect("index checked against len above");
                i += 2;
            }
            Item::Value(Value::InlineTable(_)) => {
                return Err(format!(
                    "`{walked}` is an inline table; write it as a [table] to override its fields"
                ))
            }
            _ => return Err(format!("`{walked}` is a value, not a table")),
        }
    }
}
