//! The S3 gateway (`stratos s3g`, issue 21). In progress: [`sigv4`], the request signatures
//! every S3 client sends, verified as AWS does.

pub mod sigv4;
