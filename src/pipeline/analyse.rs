//! Runs one analysis: study → series → volumes → preprocessing → scope gate → ensemble →
//! recommendation, timing each stage.
//!
//! An [`Analyser`] is what a worker holds (`crate::worker`); hooks never call it. Every failure
//! becomes an [`Analysis`] with outcome `abstained` (the data cannot support an estimate),
//! `out-of-scope` (the scope gate: no enhancing intra-axial mass to ask about) or `unavailable`
//! (something was down or full; the queue retries it).

use std::{collections::BTreeMap, sync::Arc};

use super::analysis::{Analysis, InputProfile, ModelInfo, Stopwatch, UsedSeries};
use crate::{config::Settings, dicomweb::DicomWebClient, fhir::study::PriorStudy};
use neurocds_analysis::{
    decision::{Outcome, effective_thresholds, recommend},
    imaging::{
        Volume,
        preprocess::{self, Recipe},
        series::{SeriesRules, SeriesSelection, recognition_path},
    },
    inference::{Engine, InferenceError, ModelInput},
};

/// A place in the worker's concurrency, held until the last piece of an analysis's work ends:
/// blocking work (assembly, preprocessing) outlives a task aborted at its deadline, and keeps
/// its place until it returns, so abandoned work cannot pile up beyond the bound.
pub type Hold = Arc<tokio::sync::OwnedSemaphorePermit>;

/// What running an analysis needs: the ensemble, the PACS client and the series rules.
#[derive(Clone)]
pub struct Analyser {
    engine: Engine,
    dicomweb: DicomWebClient,
    rules: Arc<SeriesRules>,
    settings: Arc<Settings>,
}

impl Analyser {
    pub fn new(engine: Engine, dicomweb: DicomWebClient, rules: SeriesRules, settings: Arc<Settings>) -> Analyser {
        Analyser { engine, dicomweb, rules: Arc::new(rules), settings }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn model_info(&self) -> ModelInfo {
        let m = self.engine.manifest();
        ModelInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            ensemble_sha256: m.ensemble_hash(),
            member_sha256: m.members.iter().map(|x| x.sha256.clone()).collect(),
            preprocessing_version: m.preprocessing_version.clone(),
        }
    }

    /// An analysis that ended at `stage` without an estimate.
    pub fn failed(&self, study: &PriorStudy, stage: &str, outcome: Outcome, reason: String, timings: BTreeMap<String, u64>) -> Analysis {
        Analysis {
            study_uid: study.study_uid.clone(),
            study_reference: study.reference.clone(),
            study_started: study.started.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            t1c: None,
            t2: None,
            series_verdicts: serde_json::Value::Array(Vec::new()),
            model: self.model_info(),
            ensemble: None,
            lesion_volume_ml: None,
            outcome,
            recommendation: None,
            reason: Some(reason),
            failed_stage: Some(stage.to_owned()),
            stage_timings_ms: timings,
            key_images: None,
            scope: None,
            inputs: None,
            shared: Default::default(),
        }
    }

    /// study → series → volumes → preprocessing → ensemble → recommendation. `hold` goes with
    /// every piece of blocking work, which outlives an aborted task.
    pub async fn analyse(&self, study: &PriorStudy, hold: Hold) -> Analysis {
        let mut watch = Stopwatch::start();
        let Some(base) = study.dicomweb.clone().or_else(|| study.series_dicomweb.values().next().cloned()) else {
            return self.failed(study, "series_metadata", Outcome::Unavailable, "no DICOMweb endpoint for the study".into(), watch.timings);
        };
        let found = super::discover::discover(&self.dicomweb, &self.rules, study, &base, &mut watch).await;
        let super::discover::Discovered { metadata, selection, instances } = match found {
            Ok(d) => d,
            Err(super::discover::DiscoveryFailed(e)) => return self.failed(study, "series_metadata", Outcome::Unavailable, e.to_string(), watch.timings),
        };
        let verdicts = serde_json::to_value(&selection.verdicts).unwrap_or_default();
        let used = |uid: &Option<String>| {
            uid.as_ref().and_then(|u| metadata.iter().find(|m| &m.series_uid == u)).map(|m| UsedSeries { series_uid: m.series_uid.clone(), description: m.description.clone(), instances: m.instance_count })
        };
        let (t1c_used, t2_used) = (used(&selection.t1c), used(&selection.t2));
        let mut inputs = input_profile(&selection, &metadata);
        let series_inputs = inputs.clone();
        watch.lap("series_selection");
        let with_series = |mut a: Analysis| {
            a.series_verdicts = verdicts.clone();
            a.t1c = t1c_used.clone();
            a.t2 = t2_used.clone();
            a.inputs = Some(series_inputs.clone());
            a
        };
        let (Some(t1c_uid), Some(t2_uid), Some(instances)) = (selection.t1c.clone(), selection.t2.clone(), instances) else {
            let missing = if selection.t1c.is_none() { "no T1 post-contrast series" } else { "no T2-weighted series" };
            return with_series(self.failed(study, "series_selection", Outcome::Abstained, format!("series missing: {missing} in the prior study"), watch.timings));
        };
        let (t1c_objs, t2_objs) = match instances {
            Ok(both) => both,
            Err(e) => return with_series(self.failed(study, "retrieval", Outcome::Unavailable, e.to_string(), watch.timings)),
        };
        let held = hold.clone();
        let assembled = tokio::task::spawn_blocking(move || {
            let _held = held;
            let a = Volume::assemble(&t1c_uid, &t1c_objs);
            drop(t1c_objs);
            let b = Volume::assemble(&t2_uid, &t2_objs);
            (a, b)
        })
        .await;
        let (t1c, t2) = match assembled {
            Ok((Ok(a), Ok(b))) => (a, b),
            Ok((Err(e), _)) | Ok((_, Err(e))) => return with_series(self.failed(study, "assembly", Outcome::Abstained, e.to_string(), watch.timings)),
            Err(e) => return with_series(self.failed(study, "assembly", Outcome::Unavailable, format!("volume assembly stopped: {e}"), watch.timings)),
        };
        watch.lap("assembly");
        let m = self.engine.manifest();
        let recipe = Recipe { shape: m.input.shape, spacing_mm: m.input.spacing_mm };
        let held = hold.clone();
        let prepared = match tokio::task::spawn_blocking(move || {
            let _held = held;
            preprocess::prepare(&t1c, &t2, &recipe)
        })
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(abstention)) if abstention.kind.is_out_of_scope() => {
                // The scope gate: no enhancing intra-axial mass to ask about. No input is built,
                // the ensemble never runs, and no recommendation can follow.
                let mut a = with_series(self.failed(study, "scope", Outcome::OutOfScope, abstention.reason, watch.timings));
                a.scope = abstention.scope;
                return a;
            }
            Ok(Err(abstention)) => return with_series(self.failed(study, "preprocessing", Outcome::Abstained, abstention.reason, watch.timings)),
            Err(e) => return with_series(self.failed(study, "preprocessing", Outcome::Unavailable, format!("preprocessing stopped: {e}"), watch.timings)),
        };
        watch.lap("preprocessing");
        let key_images = crate::pipeline::analysis::KeyImages::from(&prepared.key_images);
        let scope = prepared.scope;
        let lesion_volume_ml = prepared.lesion_volume_ml;
        inputs.lesion_volume_ml = Some(lesion_volume_ml);
        inputs.t1c_lesion_mean = Some(prepared.t1c_lesion_mean);
        inputs.t2_lesion_mean = Some(prepared.t2_lesion_mean);
        let input = ModelInput { data: prepared.data, lesion_volume_ml, t1c_lesion_mean: prepared.t1c_lesion_mean };
        let output = match self.engine.predict(input).await {
            Ok(o) => o,
            Err(e @ (InferenceError::Overloaded | InferenceError::WorkerGone)) => return with_series(self.failed(study, "inference", Outcome::Unavailable, e.to_string(), watch.timings)),
            Err(e) => return with_series(self.failed(study, "inference", Outcome::Abstained, e.to_string(), watch.timings)),
        };
        watch.lap("inference");
        let thresholds = effective_thresholds(&self.settings.decision, &m.thresholds);
        let (outcome, recommendation, reason) = match &output.abstain_reason {
            Some(r) => (Outcome::Abstained, None, Some(r.clone())),
            None => (Outcome::Recommended, Some(recommend(output.calibrated_probability, &thresholds)), None),
        };
        Analysis {
            study_uid: study.study_uid.clone(),
            study_reference: study.reference.clone(),
            study_started: study.started.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            t1c: t1c_used,
            t2: t2_used,
            series_verdicts: verdicts,
            model: self.model_info(),
            ensemble: Some(output),
            lesion_volume_ml: Some(lesion_volume_ml),
            outcome,
            recommendation,
            reason,
            failed_stage: None,
            stage_timings_ms: watch.timings,
            key_images: Some(key_images),
            scope: Some(scope),
            inputs: Some(inputs),
            shared: Default::default(),
        }
    }
}

/// The inputs model monitoring watches that the series headers give: the T1c's scanner and
/// acquisition, and how each chosen series was recognised.
fn input_profile(selection: &SeriesSelection, metadata: &[neurocds_analysis::imaging::SeriesMetadata]) -> InputProfile {
    let header = |uid: &Option<String>| uid.as_ref().and_then(|u| metadata.iter().find(|m| &m.series_uid == u));
    let path = |uid: &Option<String>| {
        let v = selection.verdicts.iter().find(|v| Some(&v.series_uid) == uid.as_ref())?;
        Some(recognition_path(v.class, &v.reason).to_owned())
    };
    let t1c = header(&selection.t1c);
    InputProfile {
        manufacturer: t1c.and_then(|m| m.manufacturer.as_deref()).map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()),
        t1c_field_strength_t: t1c.and_then(|m| m.magnetic_field_strength_t).filter(|t| t.is_finite() && *t > 0.0),
        t1c_acquisition: t1c.and_then(|m| m.mr_acquisition_type.as_deref()).map(|a| a.trim().to_ascii_uppercase()).filter(|a| !a.is_empty()),
        t1c_recognition: path(&selection.t1c),
        t2_recognition: path(&selection.t2),
        lesion_volume_ml: None,
        t1c_lesion_mean: None,
        t2_lesion_mean: None,
    }
}
