//! Finished analyses kept in memory, so that a hook for a study this process has already seen
//! answers without a database round trip.
//!
//! Safe because only final analyses are cached here (`Finality::Final`: the pixels settled
//! them), and the `analyses` table never replaces a final row. Abstentions with a time-to-live
//! and failures are always read from the database. The
//! database stays the shared state across replicas; this is a read-through copy of it.
//!
//! Entries are slim: the key images (≈ 300 KB of PNG per study) are left out, since the hook
//! answer never shows them and the case-report page reads them from the database.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use super::analysis::Analysis;
use crate::queue::AnalysisKey;

/// A bounded map of finished analyses; the oldest entry goes first when it is full.
pub struct FinishedAnalyses {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<AnalysisKey, Arc<Analysis>>,
    order: VecDeque<AnalysisKey>,
}

impl FinishedAnalyses {
    /// `capacity` 0 turns the cache off.
    pub fn new(capacity: usize) -> FinishedAnalyses {
        FinishedAnalyses { inner: Mutex::new(Inner::default()), capacity }
    }

    pub fn get(&self, key: &AnalysisKey) -> Option<Arc<Analysis>> {
        self.inner.lock().ok()?.map.get(key).cloned()
    }

    /// Keeps a slim copy of `analysis` and returns it.
    pub fn insert(&self, key: AnalysisKey, analysis: &Analysis) -> Arc<Analysis> {
        let slim = Arc::new(Analysis { key_images: None, ..analysis.clone() });
        if self.capacity == 0 {
            return slim;
        }
        if let Ok(mut inner) = self.inner.lock() {
            if inner.map.insert(key.clone(), slim.clone()).is_none() {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
        slim
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use neurocds_analysis::decision::Outcome;

    use crate::pipeline::analysis::{KeyImages, ModelInfo};

    fn key(study: &str) -> AnalysisKey {
        AnalysisKey { patient_ref: "Patient/p1".into(), study_uid: study.into(), model_version: "m@1".into(), client: "https://ehr".into(), source: "http://pacs/dicom-web".into() }
    }

    fn analysis(study: &str) -> Analysis {
        Analysis {
            study_uid: study.into(),
            study_reference: None,
            study_started: None,
            t1c: None,
            t2: None,
            series_verdicts: serde_json::Value::Array(Vec::new()),
            model: ModelInfo { name: "m".into(), version: "1".into(), ensemble_sha256: "e".into(), member_sha256: Vec::new(), preprocessing_version: "p".into() },
            ensemble: None,
            lesion_volume_ml: Some(12.0),
            outcome: Outcome::Abstained,
            recommendation: None,
            reason: Some("no enhancing lesion".into()),
            failed_stage: None,
            stage_timings_ms: BTreeMap::new(),
            key_images: Some(KeyImages { t1c_png_base64: "AAAA".into(), t2_png_base64: "BBBB".into() }),
            scope: None,
            inputs: None,
            shared: Default::default(),
        }
    }

    #[test]
    fn a_cached_analysis_is_returned_without_its_key_images() {
        let cache = FinishedAnalyses::new(4);
        cache.insert(key("1.2.3"), &analysis("1.2.3"));
        let hit = cache.get(&key("1.2.3")).expect("cached");
        assert_eq!(hit.study_uid, "1.2.3");
        assert_eq!(hit.reason.as_deref(), Some("no enhancing lesion"));
        assert!(hit.key_images.is_none());
        assert!(cache.get(&key("9.9.9")).is_none());
    }

    #[test]
    fn the_oldest_entry_is_evicted_when_full() {
        let cache = FinishedAnalyses::new(2);
        for s in ["1", "2", "3"] {
            cache.insert(key(s), &analysis(s));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("1")).is_none());
        assert!(cache.get(&key("2")).is_some() && cache.get(&key("3")).is_some());
    }

    #[test]
    fn inserting_the_same_key_twice_keeps_one_entry() {
        let cache = FinishedAnalyses::new(2);
        cache.insert(key("1"), &analysis("1"));
        cache.insert(key("1"), &analysis("1"));
        cache.insert(key("2"), &analysis("2"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("1")).is_some());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = FinishedAnalyses::new(0);
        cache.insert(key("1"), &analysis("1"));
        assert!(cache.is_empty());
    }
}
