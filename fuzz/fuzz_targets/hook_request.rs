//! The CDS Hooks request body (hook, context, prefetch, fhirServer, fhirAuthorization).
#![no_main]

use libfuzzer_sys::fuzz_target;
use neurocds::cds::hook::{Hook, HookRequest};

fuzz_target!(|data: &[u8]| {
    let _ = HookRequest::parse(data, "neurocds-brain-mri-order-sign", Hook::OrderSign);
    let _ = HookRequest::parse(data, "neurocds-brain-mri-order-select", Hook::OrderSelect);
});
