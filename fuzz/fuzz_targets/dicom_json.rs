//! DICOM JSON (QIDO-RS series attributes and WADO-RS metadata) read into what series
//! recognition uses. Input: a JSON array; its first object is the QIDO answer, the rest the
//! instances' metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neurocds_analysis::imaging::{dicom_json, series};

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Some((qido, instances)) = items.split_first() else {
        return;
    };
    let metadata = dicom_json::from_instances("1.2.3", qido, instances);
    if let Ok(rules) = series::SeriesRules::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/series-rules.toml")) {
        let _ = series::select_series(&rules, std::slice::from_ref(&metadata));
    }
});
