//! The one place where errors become `tonic::Status`, with etcd 3.4's gRPC
//! codes and messages byte for byte (`rpctypes/error.go`, `v3rpc/util.go`).

use storage::EtcdError;
use storage::auth::AuthError;
use tonic::{Code, Status};

/// The gRPC status etcd 3.4 sends for `e`.
pub fn to_status(e: &EtcdError) -> Status {
    Status::new(code(e), e.to_string())
}

fn code(e: &EtcdError) -> Code {
    use EtcdError::*;
    match e {
        EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
        | RequestTooLarge => Code::InvalidArgument,
        Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
        NoSpace => Code::ResourceExhausted,
        MemberBadUrls => Code::InvalidArgument,
        LeaseNotFound | MemberNotFound => Code::NotFound,
        LeaseExist | NotLeader | BadLeaderTransferee | MemberExist | PeerUrlExist
        | MemberNotLearner | LearnerNotReady | TooManyLearners => Code::FailedPrecondition,
        // Declared FailedPrecondition, sent as Unknown (the same client-side
        // error mapping as TooManyRequests).
        MemberNotEnoughStarted => Code::Unknown,
        Unhealthy | NotSupportedForLearner => Code::Unavailable,
        // etcd 3.4 declares ResourceExhausted but maps it to a client-side
        // error, so grpc-go sends Unknown; clients see Unknown.
        TooManyRequests => Code::Unknown,
        // Not in etcd 3.4's rpctypes map either, so it also goes out as Unknown;
        // so does a backend error (`togRPCError`'s default).
        LeaderTransferTimeout | Backend(_) => Code::Unknown,
        // The lock and election services return their recipes' plain Go
        // errors, which grpc-go sends as Unknown.
        ElectionNotLeader | ElectionNoLeader | MissingLeaderKey => Code::Unknown,
        NoLeader | LeaderChanged | Stopped | Timeout | TimeoutDueToLeaderFail => Code::Unavailable,
        Corrupt => Code::DataLoss,
        Auth(a) => auth_code(a),
    }
}

/// etcd's codes for its auth errors (`rpctypes/error.go`).
fn auth_code(e: &AuthError) -> Code {
    use AuthError::*;
    match e {
        RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
        | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
        | AuthNotEnabled => Code::FailedPrecondition,
        UserEmpty | RoleEmpty | AuthFailed | InvalidAuthMgmt | AuthOldRevision => {
            Code::InvalidArgument
        }
        PermissionDenied => Code::PermissionDenied,
        InvalidAuthToken => Code::Unauthenticated,
        // Not in etcd's map: sent as its plain error.
        NoPasswordUser => Code::Unknown,
    }
}

/// An auth refusal as etcd's maintenance service sends it: the auth store's
/// own error, unmapped (gRPC Unknown, `auth: permission denied`).
pub fn maintenance_auth_status(e: &EtcdError) -> Status {
    match e {
        EtcdError::Auth(a) => Status::new(Code::Unknown, a.internal_text()),
        other => to_status(other),
    }
}

/// The gRPC status etcd 3.4's Lock and Election services send for `e`.
/// They reach the store through etcd's in-process client, whose
/// `rpctypes.Error` turns every server error it knows into a plain Go error;
/// grpc-go sends a plain error as `Unknown` with its text. So a Lock on a
/// missing lease is `Unknown "etcdserver: requested lease not found"`, not
/// `NotFound`.
pub fn to_status_via_client(e: &EtcdError) -> Status {
    Status::new(Code::Unknown, e.to_string())
}

/// A response from the apply path that does not fit the request: a bug.
pub fn mismatched_response() -> Status {
    Status::internal("oxcd: response does not match the request")
}

/// A gRPC handler's answer from the actor path's: the response variant the
/// request expects, or etcd's status for the error.
/// `reply!(node.write(Replicated::Put(req)).await, ApplyResponse::Put)`.
macro_rules! reply {
    ($result:expr, $variant:path) => {
        match $result {
            Ok($variant(r)) => Ok(tonic::Response::new(r)),
            Ok(_) => Err($crate::errors::mismatched_response()),
            Err(e) => Err($crate::errors::to_status(&e)),
        }
    };
}
pub(crate) use reply;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_etcds_code_and_message() {
        use EtcdError::*;
        let table: &[(EtcdError, Code, &str)] = &[
            (
                EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                MemberExist,
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                PeerUrlExist,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                MemberNotEnoughStarted,
                Code::Unknown,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                MemberNotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                TooManyLearners,
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                Unhealthy,
                Code::Unavailable,
                "etcdserver: unhealthy cluster",
            ),
            (
                NotSupportedForLearner,
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            (
                KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                LeaseExist,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                TooManyRequests,
                Code::Unknown,
                "etcdserver: too many requests",
            ),
            (NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (
                NotLeader,
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (
                LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (
                TimeoutDueToLeaderFail,
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            (Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (
                BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                LeaderTransferTimeout,
                Code::Unknown,
                "etcdserver: request timed out, leader transfer took too long",
            ),
            (ElectionNotLeader, Code::Unknown, "election: not leader"),
            (ElectionNoLeader, Code::Unknown, "election: no leader"),
            (
                MissingLeaderKey,
                Code::Unknown,
                "\"leader\" field must be provided",
            ),
            (
                Auth(AuthError::PermissionDenied),
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                Backend("io: No space left on device (os error 28)".to_string()),
                Code::Unknown,
                "io: No space left on device (os error 28)",
            ),
        ];
        for (err, code, message) in table {
            let s = to_status(err);
            assert_eq!(s.code(), *code, "{err:?}");
            assert_eq!(s.message(), *message, "{err:?}");
        }
        // Every variant has a row: a new variant does not compile until it
        // gets a position here, and then fails this test until the table
        // (and the array's length) hold it.
        let position = |e: &EtcdError| -> usize {
            match e {
                EmptyKey => 0,
                KeyNotFound => 1,
                ValueProvided => 2,
                LeaseProvided => 3,
                TooManyOps => 4,
                DuplicateKey => 5,
                Compacted => 6,
                FutureRev => 7,
                NoSpace => 8,
                LeaseNotFound => 9,
                LeaseExist => 10,
                LeaseTtlTooLarge => 11,
                RequestTooLarge => 12,
                TooManyRequests => 13,
                NoLeader => 14,
                NotLeader => 15,
                LeaderChanged => 16,
                Stopped => 17,
                Timeout => 18,
                TimeoutDueToLeaderFail => 19,
                Corrupt => 20,
                BadLeaderTransferee => 21,
                LeaderTransferTimeout => 22,
                Backend(_) => 23,
                ElectionNotLeader => 24,
                ElectionNoLeader => 25,
                MissingLeaderKey => 26,
                MemberExist => 27,
                PeerUrlExist => 28,
                MemberNotEnoughStarted => 29,
                MemberBadUrls => 30,
                MemberNotFound => 31,
                MemberNotLearner => 32,
                LearnerNotReady => 33,
                TooManyLearners => 34,
                Unhealthy => 35,
                NotSupportedForLearner => 36,
                Auth(_) => 37,
            }
        };
        let mut covered = [false; 38];
        for (err, _, _) in table {
            covered[position(err)] = true;
        }
        let missing: Vec<usize> = (0..covered.len()).filter(|&i| !covered[i]).collect();
        assert!(
            missing.is_empty(),
            "variants without a row, by position: {missing:?}"
        );
    }

    #[test]
    fn lock_and_election_errors_go_out_as_unknown() {
        let s = to_status_via_client(&EtcdError::LeaseNotFound);
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s = to_status_via_client(&EtcdError::EmptyKey);
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(s.message(), "etcdserver: key is not provided");
    }

    #[test]
    fn auth_errors_map_to_etcds_codes_and_messages() {
        use AuthError::*;
        let table: &[(AuthError, Code, &str)] = &[
            (
                RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                UserAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            (
                UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                UserNotFound,
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            ),
            (
                RoleAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            (
                RoleNotFound,
                Code::FailedPrecondition,
                "etcdserver: role name not found",
            ),
            (
                RoleEmpty,
                Code::InvalidArgument,
                "etcdserver: role name is empty",
            ),
            (
                AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                NoPasswordUser,
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            (
                PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                RoleNotGranted,
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            (
                PermissionNotGranted,
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (
                AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (
                InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                InvalidAuthMgmt,
                Code::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
            (
                AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
        ];
        for (err, code, message) in table {
            let s = to_status(&EtcdError::Auth(*err));
            assert_eq!((s.code(), s.message()), (*code, *message), "{err:?}");
        }
        let raw = maintenance_auth_status(&EtcdError::Auth(PermissionDenied));
        assert_eq!(
            (raw.code(), raw.message()),
            (Code::Unknown, "auth: permission denied")
        );
    }
}
