//! Permissions (seed 001 style) and what a verified key may do.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "traces:write")]
    TracesWrite,
    #[serde(rename = "traces:read")]
    TracesRead,
    #[serde(rename = "rules:read")]
    RulesRead,
    #[serde(rename = "reports:create")]
    ReportsCreate,
    #[serde(rename = "reports:read")]
    ReportsRead,
    #[serde(rename = "keys:admin")]
    KeysAdmin,
    #[serde(rename = "system:metrics")]
    SystemMetrics,
    #[serde(rename = "system:health")]
    SystemHealth,
    /// Erase a data subject's records (GDPR Art. 17).
    #[serde(rename = "data:erase")]
    DataErase,
    /// Implies every other permission.
    #[serde(rename = "admin:all")]
    AdminAll,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::TracesWrite,
        Permission::TracesRead,
        Permission::RulesRead,
        Permission::ReportsCreate,
        Permission::ReportsRead,
        Permission::KeysAdmin,
        Permission::SystemMetrics,
        Permission::SystemHealth,
        Permission::DataErase,
        Permission::AdminAll,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TracesWrite => "traces:write",
            Permission::TracesRead => "traces:read",
            Permission::RulesRead => "rules:read",
            Permission::ReportsCreate => "reports:create",
            Permission::ReportsRead => "reports:read",
            Permission::KeysAdmin => "keys:admin",
            Permission::SystemMetrics => "system:metrics",
            Permission::SystemHealth => "system:health",
            Permission::DataErase => "data:erase",
            Permission::AdminAll => "admin:all",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s.trim())
    }
}

/// Project ids: short, printable, no wildcard except the key scope `*`.
pub fn valid_project_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
