//! What one key may do to another: the rules behind key administration, as plain functions.
//!
//! A key administers (lists, rotates, revokes) only keys *within* its own rights: every
//! project of the target is in the caller's scope, and every permission of the target is one
//! the caller holds (`admin:all` holds everything). The owner key is administered only by
//! itself. A key also never *creates* a key beyond itself: no project, permission or lifetime
//! it does not have.
//!
//! The HTTP layer maps [`Denial`]s to statuses: [`Denial::OutOfScope`] is a 404 (tenancy: a key
//! outside the caller's projects is indistinguishable from a missing one), the others are 403
//! naming what is missing. The CLI runs with shell access and is not subject to these rules.

use std::fmt;

use super::keys::KeyRecord;
use super::permission::Permission;

/// Why a key may not act on another key, or create one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The target (or a requested project) lies outside the caller's projects.
    OutOfScope,
    /// The target is the owner key and the caller is not.
    OwnerKey,
    /// The target holds (or the request asks for) permissions the caller lacks.
    MissingPermissions(Vec<Permission>),
    /// The requested key would outlive the caller's own key.
    OutlivesCaller,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::OutOfScope => f.write_str("outside this key's projects"),
            Denial::OwnerKey => {
                f.write_str("the owner key can be rotated or revoked only with the owner key itself")
            }
            Denial::MissingPermissions(missing) => {
                let names: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
                write!(f, "this API key lacks {}", names.join(", "))
            }
            Denial::OutlivesCaller => f.write_str(
                "expires_in: a key cannot create a key that outlives itself (its own expiry is earlier)",
            ),
        }
    }
}

fn holds(caller: &KeyRecord, p: Permission) -> bool {
    caller.permissions.contains(&Permission::AdminAll) || caller.permissions.contains(&p)
}

fn all_projects(key: &KeyRecord) -> bool {
    key.projects.iter().any(|p| p == "*")
}

/// Whether every project in `projects` is within the caller's scope (`*` only within `*`).
pub fn projects_within(caller: &KeyRecord, projects: &[String]) -> bool {
    all_projects(caller)
        || projects
            .iter()
            .all(|p| p != "*" && caller.projects.iter().any(|c| c == p))
}

/// The permissions among `wanted` that the caller does not hold.
pub fn missing_permissions(caller: &KeyRecord, wanted: &[Permission]) -> Vec<Permission> {
    let mut missing: Vec<Permission> = wanted
        .iter()
        .copied()
        .filter(|p| !holds(caller, *p))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// May `caller` list, rotate or revoke `target`?
pub fn may_administer(caller: &KeyRecord, target: &KeyRecord) -> Result<(), Denial> {
    if !projects_within(caller, &target.projects) {
        return Err(Denial::OutOfScope);
    }
    if target.is_owner && caller.id != target.id {
        return Err(Denial::OwnerKey);
    }
    let missing = missing_permissions(caller, &target.permissions);
    if !missing.is_empty() {
        return Err(Denial::MissingPermissions(missing));
    }
    Ok(())
}

/// May `caller` create a key with these projects, permissions and expiry (RFC 3339, fixed
/// width, or `None` for no expiry)?
pub fn may_create(
    caller: &KeyRecord,
    projects: &[String],
    permissions: &[Permission],
    expires_at: Option<&str>,
) -> Result<(), Denial> {
    if !projects_within(caller, projects) {
        return Err(Denial::OutOfScope);
    }
    let missing = missing_permissions(caller, permissions);
    if !missing.is_empty() {
        return Err(Denial::MissingPermissions(missing));
    }
    if let Some(own) = caller.expires_at.as_deref() {
        // Fixed-width UTC times compare as text.
        match expires_at {
            None => return Err(Denial::OutlivesCaller),
            Some(wanted) if wanted > own => return Err(Denial::OutlivesCaller),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, projects: &[&str], permissions: &[Permission]) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: id.into(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
            permissions: permissions.to_vec(),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            expires_at: None,
            rotated_at: None,
            revoked_at: None,
            is_owner: false,
        }
    }

    #[test]
    fn a_key_administers_only_keys_within_its_rights() {
        let admin = key(
            "a",
            &["p"],
            &[Permission::KeysAdmin, Permission::TracesRead],
        );
        let reader = key("r", &["p"], &[Permission::TracesRead]);
        assert_eq!(may_administer(&admin, &reader), Ok(()));
        let writer = key(
            "w",
            &["p"],
            &[Permission::TracesWrite, Permission::TracesRead],
        );
        assert_eq!(
            may_administer(&admin, &writer),
            Err(Denial::MissingPermissions(vec![Permission::TracesWrite]))
        );
        let elsewhere = key("e", &["p", "q"], &[Permission::TracesRead]);
        assert_eq!(may_administer(&admin, &elsewhere), Err(Denial::OutOfScope));
        let everywhere = key("s", &["*"], &[Permission::TracesRead]);
        assert_eq!(may_administer(&admin, &everywhere), Err(Denial::OutOfScope));
    }

    #[test]
    fn only_the_owner_administers_the_owner() {
        let mut owner = key("o", &["*"], &[Permission::AdminAll]);
        owner.is_owner = true;
        let other_admin = key("x", &["*"], &[Permission::AdminAll]);
        assert_eq!(may_administer(&other_admin, &owner), Err(Denial::OwnerKey));
        assert_eq!(may_administer(&owner, &owner), Ok(()));
        let keys_admin = key("k", &["*"], &[Permission::KeysAdmin]);
        assert_eq!(may_administer(&keys_admin, &owner), Err(Denial::OwnerKey));
        assert_eq!(
            may_administer(&keys_admin, &other_admin),
            Err(Denial::MissingPermissions(vec![Permission::AdminAll]))
        );
    }

    #[test]
    fn creation_is_bounded_by_projects_permissions_and_lifetime() {
        let mut admin = key(
            "a",
            &["p"],
            &[Permission::KeysAdmin, Permission::TracesRead],
        );
        let p = vec!["p".to_string()];
        assert_eq!(
            may_create(&admin, &p, &[Permission::TracesRead], None),
            Ok(())
        );
        assert_eq!(
            may_create(&admin, &["*".into()], &[Permission::TracesRead], None),
            Err(Denial::OutOfScope)
        );
        assert_eq!(
            may_create(&admin, &p, &[Permission::AdminAll], None),
            Err(Denial::MissingPermissions(vec![Permission::AdminAll]))
        );
        admin.expires_at = Some("2026-06-01T00:00:00.000000Z".into());
        assert_eq!(
            may_create(&admin, &p, &[Permission::TracesRead], None),
            Err(Denial::OutlivesCaller),
            "an expiring key cannot make an eternal one"
        );
        assert_eq!(
            may_create(
                &admin,
                &p,
                &[Permission::TracesRead],
                Some("2026-07-01T00:00:00.000000Z")
            ),
            Err(Denial::OutlivesCaller)
        );
        assert_eq!(
            may_create(
                &admin,
                &p,
                &[Permission::TracesRead],
                Some("2026-05-01T00:00:00.000000Z")
            ),
            Ok(())
        );
    }
}
