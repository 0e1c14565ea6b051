use proto::authpb::permission::Type as PermType;

use super::*;

fn info(user: &str, store: &AuthStore) -> AuthInfo {
    AuthInfo {
        username: user.to_owned(),
        revision: store.revision(),
    }
}

fn grant(store: &mut AuthStore, role: &str, t: PermType, key: &[u8], end: &[u8]) {
    store
        .role_grant_permission(&AuthRoleGrantPermissionRequest {
            name: role.to_owned(),
            perm: Some(Permission {
                perm_type: t as i32,
                key: key.to_vec(),
                range_end: end.to_vec(),
            }),
        })
        .unwrap();
}

fn with_root() -> AuthStore {
    let mut s = AuthStore::new();
    s.user_add("root", b"h".to_vec(), None).unwrap();
    s.user_grant_role("root", ROOT).unwrap();
    s
}

#[test]
fn enable_needs_root_user_with_root_role() {
    let mut s = AuthStore::new();
    assert_eq!(s.enable(), Err(AuthError::RootUserNotExist));
    s.user_add("root", b"h".to_vec(), None).unwrap();
    assert_eq!(s.enable(), Err(AuthError::RootRoleNotExist));
    s.user_grant_role("root", ROOT).unwrap();
    let rev = s.revision();
    s.enable().unwrap();
    assert_eq!(s.revision(), rev, "enable keeps the revision, as etcd");
    assert_eq!(s.user_delete("root"), Err(AuthError::InvalidAuthMgmt));
    assert_eq!(
        s.user_revoke_role("root", ROOT),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(s.role_delete(ROOT), Err(AuthError::InvalidAuthMgmt));
    assert!(s.disable());
    assert!(!s.disable());
}

#[test]
fn checks_follow_etcds_order() {
    let mut s = with_root();
    s.user_add("alice", b"h".to_vec(), None).unwrap();
    s.role_add("r").unwrap();
    grant(&mut s, "r", PermType::Read, b"a", b"m");
    s.user_grant_role("alice", "r").unwrap();
    // Disabled: everything passes.
    assert_eq!(s.check_put(&AuthInfo::default(), b"z"), Ok(()));
    s.enable().unwrap();
    assert_eq!(
        s.check_range(&AuthInfo::default(), b"a", b""),
        Err(AuthError::UserEmpty)
    );
    let alice = info("alice", &s);
    assert_eq!(s.check_range(&alice, b"b", b"c"), Ok(()));
    assert_eq!(s.check_put(&alice, b"b"), Err(AuthError::PermissionDenied));
    assert_eq!(s.check_range(&info("root", &s), b"", b"\0"), Ok(()));
    assert_eq!(
        s.check_range(&info("nobody", &s), b"b", b""),
        Err(AuthError::PermissionDenied)
    );
    // A change bumps the revision: alice's old info is stale.
    s.role_add("other").unwrap();
    assert_eq!(
        s.check_range(&alice, b"b", b""),
        Err(AuthError::AuthOldRevision)
    );
    assert_eq!(
        s.check_admin(&info("alice", &s)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.check_admin(&info("ghost", &s)),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        s.check_admin(&AuthInfo::default()),
        Err(AuthError::UserEmpty)
    );
}

#[test]
fn grants_update_in_place_and_revokes_need_an_exact_match() {
    let mut s = AuthStore::new();
    s.role_add("r").unwrap();
    grant(&mut s, "r", PermType::Read, b"b", b"c");
    grant(&mut s, "r", PermType::Read, b"a", b"");
    grant(&mut s, "r", PermType::Write, b"b", b"c");
    let perms = s.role_get("r").unwrap().perm;
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0].key, b"a");
    assert_eq!(perms[1].perm_type, PermType::Write as i32);
    let revoke = |key: &[u8], end: &[u8]| AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: key.to_vec(),
        range_end: end.to_vec(),
    };
    assert_eq!(
        s.role_revoke_permission(&revoke(b"b", b"d")),
        Err(AuthError::PermissionNotGranted)
    );
    s.role_revoke_permission(&revoke(b"b", b"c")).unwrap();
    assert_eq!(s.role_get("r").unwrap().perm.len(), 1);
}

#[test]
fn deleting_a_role_drops_it_from_users_and_the_record_round_trips() {
    let mut s = with_root();
    s.user_add(
        "bob",
        Vec::new(),
        Some(UserAddOptions { no_password: true }),
    )
    .unwrap();
    s.role_add("r").unwrap();
    s.user_grant_role("bob", "r").unwrap();
    s.user_grant_role("bob", "r").unwrap();
    assert_eq!(s.user_get("bob").unwrap().roles, vec!["r".to_owned()]);
    s.role_delete("r").unwrap();
    assert!(s.user_get("bob").unwrap().roles.is_empty());
    assert_eq!(
        s.user_revoke_role("bob", "r"),
        Err(AuthError::RoleNotGranted)
    );
    s.enable().unwrap();
    assert_eq!(s.password_hash("bob"), Err(AuthError::NoPasswordUser));
    assert_eq!(s.authenticate("bob"), Err(AuthError::AuthFailed));
    assert_eq!(s.password_hash("nobody"), Err(AuthError::AuthFailed));
    let back = AuthStore::decode(Some(&s.encode())).unwrap();
    assert_eq!(back, s);
    assert_eq!(AuthStore::decode(None).unwrap(), AuthStore::new());
}
