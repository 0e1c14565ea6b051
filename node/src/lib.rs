//! The `oxcd` server and the `oxcdctl` CLI.
//!
//! 1. [`config`]: etcd's flags and `ETCD_*` environment variables.
//! 2. [`membership`]: member and cluster ids derived as etcd derives them.
//! 3. [`bootstrap`]: builds the actor graph in one place.
//! 4. [`handle`]: the facade's door into the actors.
//! 5. [`grpc`]: etcd's gRPC services and the HTTP endpoints on the client port.
//! 6. [`concurrency`]: locks and elections on the KV store (the Lock and
//!    Election services' recipes).
//! 7. [`errors`]: the single mapping from errors to `tonic::Status`.
//! 8. [`gateway`]: etcd's JSON gateway (`/v3/*`), calling the gRPC
//!    services in process.

pub mod auth;
pub mod bootstrap;
pub mod compactor;
pub mod concurrency;
pub mod config;
pub mod corruption;
pub mod errors;
pub mod gateway;
pub mod grpc;
pub mod handle;
pub mod logging;
pub mod membership;
pub mod peer;
pub mod tls;
