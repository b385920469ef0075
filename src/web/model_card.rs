//! The model card page's view of a manifest: numbers to three significant digits, the card's
//! free-form sections (intended use, limits, metrics, training…) as paragraphs, lists and tables
//! rather than raw JSON. A hospital's own ensemble may carry other sections; anything that does
//! not fit a table stays available, folded, as JSON.

use serde_json::{Map, Value, json};

use neurocds_analysis::inference::manifest::{Calibration, Manifest};

/// `x` to three significant digits, without trailing zeros (0.9079 → 0.908, 0.0001 → 0.0001,
/// 894.38 → 894); integers as they are.
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 9) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// `intended_use` → "Intended use"; a few acronyms keep their case.
fn label(key: &str) -> String {
    let words: Vec<String> = key
        .split('_')
        .map(|w| match w {
            "auc" => "AUC".to_owned(),
            "delong" => "DeLong".to_owned(),
            "pcnsl" => "PCNSL".to_owned(),
            "ood" => "OOD".to_owned(),
            w => w.to_owned(),
        })
        .collect();
    let joined = words.join(" ");
    let mut chars = joined.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// A value that fits in one table cell, or `None`.
fn short(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_f64().map(sig3),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_owned()),
        Value::Null => Some("—".to_owned()),
        // An estimate with its confidence interval.
        Value::Object(o) if o.contains_key("estimate") && o.contains_key("lower") && o.contains_key("upper") => {
            let n = |k: &str| o.get(k).and_then(Value::as_f64).map(sig3).unwrap_or_default();
            Some(format!("{} ({}–{})", n("estimate"), n("lower"), n("upper")))
        }
        Value::Object(o) if o.values().all(|x| !x.is_object() && !x.is_array()) => {
            Some(o.iter().map(|(k, x)| format!("{} {}", label(k), short(x).unwrap_or_default())).collect::<Vec<_>>().join(" · "))
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => Some(a.iter().filter_map(short).collect::<Vec<_>>().join(", ")),
        _ => None,
    }
}

/// Rows of objects as a table: one row per entry (named by its key when `v` is an object), one
/// column per field seen; `None` when a cell would not be short.
fn table(v: &Value) -> Option<Value> {
    let rows: Vec<(Option<&String>, &Map<String, Value>)> = match v {
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => o.iter().map(|(k, x)| (Some(k), x.as_object())).map(|(k, x)| x.map(|x| (k, x))).collect::<Option<_>>()?,
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => a.iter().map(|x| x.as_object().map(|x| (None, x))).collect::<Option<_>>()?,
        _ => return None,
    };
    let mut columns: Vec<&String> = Vec::new();
    for (_, r) in &rows {
        for k in r.keys() {
            if !columns.contains(&k) {
                columns.push(k);
            }
        }
    }
    let named = rows.iter().any(|(k, _)| k.is_some());
    let mut heads: Vec<String> = if named { vec![String::new()] } else { Vec::new() };
    heads.extend(columns.iter().map(|c| label(c)));
    let mut body = Vec::new();
    for (key, r) in &rows {
        let mut cells: Vec<String> = key.map(|k| vec![label(k)]).unwrap_or_default();
        for c in &columns {
            cells.push(match r.get(*c) {
                Some(x) => short(x)?,
                None => String::new(),
            });
        }
        body.push(cells);
    }
    Some(json!({ "heads": heads, "rows": body }))
}

/// One value of the card, as the template shows it: text, a list, a table, or folded JSON.
fn shown(v: &Value) -> Value {
    if let Value::Array(a) = v
        && !a.is_empty()
        && a.iter().all(Value::is_string)
    {
        return json!({ "list": a });
    }
    if let Some(t) = table(v) {
        return json!({ "table": t });
    }
    if let Some(s) = short(v) {
        return json!({ "text": s });
    }
    if let Value::Object(o) = v {
        return json!({ "fields": o.iter().map(|(k, x)| json!({ "key": label(k), "value": shown_flat(x) })).collect::<Vec<_>>() });
    }
    json!({ "json": serde_json::to_string_pretty(v).unwrap_or_default() })
}

/// Like [`shown`], one level down: no further nesting of fields.
fn shown_flat(v: &Value) -> Value {
    match shown(v) {
        s if s.get("fields").is_some() => json!({ "json": serde_json::to_string_pretty(v).unwrap_or_default() }),
        s => s,
    }
}

/// The card's sections: the ones a reader looks for first, then the rest in the manifest's order;
/// short top-level values are gathered in one "How it was made" section.
fn sections(card: &Value) -> Vec<Value> {
    let Some(card) = card.as_object() else { return Vec::new() };
    let first = ["intended_use", "limits", "metrics", "training"];
    let mut keys: Vec<&String> = first.iter().filter_map(|k| card.get_key_value(*k).map(|(k, _)| k)).collect();
    keys.extend(card.keys().filter(|k| !first.contains(&k.as_str())));
    let mut out = Vec::new();
    let mut made = Vec::new();
    for k in keys {
        let v = &card[k.as_str()];
        let s = shown(v);
        if s.get("text").is_some() && !matches!(k.as_str(), "intended_use") {
            made.push(json!({ "key": label(k), "value": s }));
        } else {
            let mut section = s;
            section["title"] = json!(label(k));
            section["id"] = json!(k.replace('_', "-"));
            out.push(section);
        }
    }
    if !made.is_empty() {
        out.push(json!({ "title": "How it was made", "id": "how-it-was-made", "fields": made }));
    }
    out
}

fn calibration(c: &Calibration) -> String {
    match c {
        Calibration::Platt { a, b } => format!("Platt scaling of the members' mean: p = sigmoid(a · logit(mean) + b), a = {}, b = {}", sig3(*a), sig3(*b)),
        Calibration::None => "none: the members' mean is reported as is".to_owned(),
    }
}

/// Everything the model card template shows.
pub fn view(m: &Manifest, device: &str) -> Value {
    let ood = m.ood.as_ref().map(|o| {
        format!(
            "the lesion is outside the training range: volume {}–{} mL, mean T1c enhancement {}–{} (robust z)",
            sig3(o.lesion_volume_ml[0]),
            sig3(o.lesion_volume_ml[1]),
            sig3(o.t1c_lesion_mean[0]),
            sig3(o.t1c_lesion_mean[1])
        )
    });
    json!({
        "m": m,
        "classes": m.classes.join(", "),
        "input": format!("{} × {:?} voxels at {} mm; {}", m.input.channels.join(" + "), m.input.shape, m.input.spacing_mm, m.input.normalisation),
        "calibration": calibration(&m.calibration),
        "lymphoma_likely": sig3(m.thresholds.lymphoma_likely),
        "gbm_likely": sig3(m.thresholds.gbm_likely),
        "max_member_spread": sig3(m.max_member_spread),
        "ood": ood,
        "device": device,
        "ensemble_sha256": m.ensemble_hash(),
        "sections": sections(&m.card),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_show_three_significant_digits() {
        assert_eq!(sig3(0.9078697704553869), "0.908");
        assert_eq!(sig3(0.0001), "0.0001");
        assert_eq!(sig3(0.09946408402005401), "0.0995");
        assert_eq!(sig3(-0.6075840648518449), "-0.608");
        assert_eq!(sig3(894.377079185), "894");
        assert_eq!(sig3(20261126.0), "20261126");
        assert_eq!(sig3(0.5), "0.5");
    }

    #[test]
    fn metrics_by_split_become_a_table_with_confidence_intervals() {
        let card = json!({ "metrics": { "external": { "patients": 588, "auc": { "estimate": 0.9079, "lower": 0.8786, "upper": 0.9337 } } } });
        let s = sections(&card);
        assert_eq!(s[0]["title"], "Metrics");
        assert_eq!(s[0]["table"]["heads"], json!(["", "Patients", "AUC"]));
        assert_eq!(s[0]["table"]["rows"], json!([["External", "588", "0.908 (0.879–0.934)"]]));
    }

    #[test]
    fn short_values_gather_under_how_it_was_made_and_lists_stay_lists() {
        let card = json!({ "command": "neurocds-lab train", "limits": ["synthetic only"], "intended_use": "advice" });
        let s = sections(&card);
        let titles: Vec<&str> = s.iter().map(|x| x["title"].as_str().unwrap_or_default()).collect();
        assert_eq!(titles, ["Intended use", "Limits", "How it was made"]);
        assert_eq!(s[1]["list"], json!(["synthetic only"]));
        assert_eq!(s[2]["fields"][0]["key"], "Command");
    }
}
