//! A Part-10 file, parsed as the service parses a WADO-RS part (declared lengths and deflate
//! checked first), through volume assembly (geometry checks, the allocation budgets, pixel
//! decoding of every transfer syntax this build reads) and, for small volumes, preprocessing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neurocds::dicomweb::multipart::parse_part;
use neurocds_analysis::imaging::{preprocess, volume::Volume};

fuzz_target!(|data: &[u8]| {
    let Ok((obj, _)) = parse_part(data, 8 << 20) else {
        return;
    };
    let instances = [obj.clone(), obj];
    let Ok(volume) = Volume::assemble("1.2.3", &instances) else {
        return;
    };
    if volume.dims().iter().product::<usize>() <= 1 << 16 {
        let recipe = preprocess::Recipe { shape: [16, 16, 16], spacing_mm: 8.0 };
        let _ = preprocess::prepare(&volume, &volume, &recipe);
    }
});
