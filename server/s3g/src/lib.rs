//! The Stratos S3 gateway (`stratos s3g`, Ozone's name and port 9878): the S3 REST API over
//! the OM and the datanodes, so that boto3, the AWS CLI and other S3 tools work against
//! Stratos. S3 buckets are the buckets of volume [`S3_VOLUME`].
//!
//! - [`server`]: the process: one glommio executor per core, each accepting connections on
//!   the shared port (SO_REUSEPORT) and serving HTTP/1.1 with hyper ([`http`]).
//! - [`gateway`]: authentication ([`sigv4`] with the principal's secret, read from the OM),
//!   routing, and the operations, acting on the OM for the principal the signature proves.
//! - [`object`]: object bytes through the datanodes (write with the MD5 ETag, ranged read).
//! - [`md5sum`]: the MD5 of ETags and Content-MD5, written for its dependency chain;
//!   [`md5pairs`]: an executor's uploads hashed two at a time.
//! - [`sse`]: server-side encryption (SSE-C, SSE-S3, SSE-KMS with the gateway's keyring).
//! - [`payload`]: request bodies in S3's encodings, checked as they stream.
//! - [`checksum`]: S3's additional checksums (`x-amz-checksum-*`), checked as they stream.
//! - [`form`]: browser-based uploads (POST Object): the form, streamed, and its policy.
//! - [`cors`]: buckets' CORS rules, their preflights and answers.
//! - [`lifecycle`]: buckets' lifecycle rules: their documents and `x-amz-expiration` (the OM
//!   expires what they say).
//! - [`policy`]: bucket policies (IAM's JSON), evaluated for every request to their bucket.
//! - [`xml`], [`error`]: S3's documents and error codes.
//! - [`metrics`]: the counters of the status port (`/prom`).

pub mod acl;
pub mod checksum;
pub mod cors;
pub mod error;
pub mod form;
pub mod gateway;
pub mod http;
pub mod lifecycle;
pub mod lookups;
pub mod md5pairs;
pub mod md5sum;
pub mod metrics;
pub mod object;
pub mod payload;
pub mod policy;
pub mod server;
pub mod sigv4;
pub mod sse;
pub mod xml;

/// The volume whose buckets are S3's (Ozone's `s3v`; the OM creates it).
pub const S3_VOLUME: &str = "s3v";
