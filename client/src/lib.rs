//! stratos-client: the async client library (routing, retries with stable client and request
//! ids, datanode I/O) and the `stratos sh` commands.
//!
//! Empty on purpose until the OM server issue (#3): it will depend on `stratos-schema` only.
