//! DICOMweb retrieval from the PACS: QIDO-RS, WADO-RS series metadata and instances
//! (`multipart/related; type="application/dicom"`), streamed, with limits.
