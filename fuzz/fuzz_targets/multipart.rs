//! The WADO-RS series answer: `multipart/related` framing, then each part as a Part-10 file
//! (including the deflate guard). Input: the raw body; the boundary is `fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neurocds::dicomweb::multipart::{Limits, read_multipart};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(data))]);
    let limits = Limits { max_instances: 64, max_bytes: 8 << 20 };
    let content_type = "multipart/related; type=\"application/dicom\"; boundary=fuzz";
    let _ = runtime().block_on(read_multipart(content_type, None, body, "http://pacs.fuzz/series", &limits));
});
