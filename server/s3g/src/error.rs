//! S3's errors: a code, an HTTP status and a message, answered as S3's `<Error>` document.

use stratos_client::{ClientError, Status};

use crate::sigv4::SigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}

impl S3Error {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> S3Error {
        S3Error { code, status, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> S3Error {
        S3Error::new("InvalidArgument", 400, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> S3Error {
        S3Error::new("InvalidRequest", 400, message)
    }
    pub fn malformed_xml(message: impl Into<String>) -> S3Error {
        S3Error::new("MalformedXML", 400, message)
    }
    pub fn not_implemented(what: &str) -> S3Error {
        S3Error::new("NotImplemented", 501, format!("{what} is not implemented by the Stratos S3 gateway yet"))
    }
    pub fn internal(message: impl Into<String>) -> S3Error {
        S3Error::new("InternalError", 500, message)
    }
    pub fn unavailable(message: impl Into<String>) -> S3Error {
        S3Error::new("ServiceUnavailable", 503, message)
    }
    pub fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new("NoSuchBucket", 404, format!("the bucket {bucket} does not exist"))
    }
    pub fn no_such_key(key: &str) -> S3Error {
        S3Error::new("NoSuchKey", 404, format!("the key {key} does not exist"))
    }
    pub fn no_such_upload() -> S3Error {
        S3Error::new("NoSuchUpload", 404, "the upload does not exist: it was completed, aborted or expired, or never began")
    }
    pub fn access_denied(message: impl Into<String>) -> S3Error {
        S3Error::new("AccessDenied", 403, message)
    }

    /// The `<Error>` document for a request of `resource` (`/bucket/key`).
    pub fn document(&self, resource: &str, request_id: &str) -> String {
        let mut w = crate::xml::Writer::plain("Error");
        w.elem("Code", self.code).elem("Message", &self.message).elem("Resource", resource).elem("RequestId", request_id);
        w.finish("Error")
    }
}

impl From<SigError> for S3Error {
    fn from(e: SigError) -> S3Error {
        let (code, status) = e.code();
        S3Error::new(code, status, e.to_string())
    }
}

/// The OM's answer to a call about `bucket` (and `key`), as S3 names it.
pub fn from_om(e: &ClientError, bucket: &str, key: Option<&str>) -> S3Error {
    let message = e.to_string();
    match e.status() {
        Some(Status::BucketNotFound) => S3Error::no_such_bucket(bucket),
        // The S3 volume is made by the OM's meta leader moments after it starts.
        Some(Status::VolumeNotFound) => S3Error::unavailable(format!("the OM has not created the S3 volume yet ({message}); retry in a moment")),
        Some(Status::KeyNotFound) => S3Error::no_such_key(key.unwrap_or("")),
        Some(Status::BucketExists) => S3Error::new("BucketAlreadyExists", 409, format!("the bucket {bucket} exists: bucket names are shared by all users")),
        Some(Status::BucketNotEmpty) => S3Error::new("BucketNotEmpty", 409, format!("the bucket {bucket} is not empty")),
        Some(Status::PermissionDenied) => S3Error::access_denied(message),
        Some(Status::InvalidName) if key.is_none() || message.contains("bucket name") => S3Error::new("InvalidBucketName", 400, message),
        Some(Status::InvalidName) => S3Error::new("KeyTooLongError", 400, message).or_invalid_key(),
        Some(Status::InvalidArgument | Status::Malformed) => S3Error::invalid_argument(message),
        Some(Status::QuotaExceeded) => S3Error::new("QuotaExceeded", 403, message),
        Some(Status::PreconditionFailed) => S3Error::new("PreconditionFailed", 412, "at least one of the preconditions you specified did not hold"),
        Some(Status::KeyBusy) => S3Error::new("SlowDown", 503, message),
        Some(Status::NoSuchUpload) => S3Error::no_such_upload(),
        Some(Status::InvalidPart) => {
            // The OM's message starts with S3's code.
            let text = message.split_once(": ").map_or(message.as_str(), |(_, t)| t);
            let code = ["InvalidPartOrder", "EntityTooSmall"].into_iter().find(|c| text.starts_with(c)).unwrap_or("InvalidPart");
            S3Error::new(code, 400, text.strip_prefix(code).map_or(text, |t| t.trim_start_matches(": ")).to_string())
        }
        Some(Status::Unavailable | Status::NotLeader | Status::RetryTooOld) => S3Error::unavailable(message),
        Some(Status::OpenKeyNotFound) => S3Error::internal(message),
        _ => match e {
            ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::Deadline { .. } | ClientError::Rpc(_) => S3Error::unavailable(message),
            _ => S3Error::internal(message),
        },
    }
}

impl S3Error {
    /// An invalid key name is S3's `KeyTooLongError` only when it is too long.
    fn or_invalid_key(self) -> S3Error {
        if self.message.contains("length") { self } else { S3Error::invalid_argument(self.message) }
    }
}
