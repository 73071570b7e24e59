//! Table and column names for sea-query, matching `migrations/sqlite` and
//! `migrations/postgres` (the same names on both), and the kinds of log records.

use sea_query::Iden;

#[derive(Iden, Clone, Copy)]
pub enum Events {
    Table,
    Seq,
    Project,
    EventId,
    RecordType,
    TraceId,
    SessionId,
    Agent,
    EventTime,
    RecordedAt,
    Body,
    Digest,
    Link,
}

#[derive(Iden, Clone, Copy)]
pub enum ChainBase {
    Table,
    Id,
    Seq,
    Link,
    Tag,
}

#[derive(Iden, Clone, Copy)]
pub enum ChainHead {
    Table,
    Id,
    Seq,
    Link,
    Tag,
}

#[derive(Iden, Clone, Copy)]
pub enum AuditLog {
    Table,
    Id,
    Timestamp,
    EventType,
    Principal,
    Project,
    Resource,
    Operation,
    Result,
    CorrelationId,
    SourceIp,
    Metadata,
    Digest,
    Link,
}

#[derive(Iden, Clone, Copy)]
pub enum Traces {
    Table,
    Project,
    TraceId,
    Agent,
    SessionId,
    StartTime,
    EndTime,
    SpanCount,
    ErrorCount,
    InputTokens,
    OutputTokens,
    CostNanos,
    LastSeq,
}

#[derive(Iden, Clone, Copy)]
pub enum Violations {
    Table,
    Seq,
    Project,
    ViolationId,
    Outcome,
    RuleId,
    Severity,
    SeverityRank,
    Message,
    EventId,
    EventSeq,
    EventKind,
    TraceId,
    SpanId,
    Agent,
    SessionId,
    At,
}

#[derive(Iden, Clone, Copy)]
pub enum ApiKeys {
    Table,
    Id,
    Name,
    SecretHash,
    Projects,
    Permissions,
    CreatedAt,
    ExpiresAt,
    RotatedAt,
    RevokedAt,
    IsOwner,
}

#[derive(Iden, Clone, Copy)]
pub enum RedactedValues {
    Table,
    Project,
    Pseudonym,
    Seq,
}

#[derive(Iden, Clone, Copy)]
pub enum CarriedTotals {
    Table,
    Project,
    Kind,
    Id,
    Projection,
    Totals,
}

#[derive(Iden, Clone, Copy)]
pub enum ProjectRetention {
    Table,
    Project,
    Days,
    ErasedThrough,
    UpdatedAt,
    UpdatedBy,
}

#[derive(Iden, Clone, Copy)]
pub enum HealthProbe {
    Table,
    Id,
    At,
}

/// The project of records that belong to no tenant (audit checkpoints, retention receipts):
/// `*` is the all-projects scope marker and never a valid project id.
pub const SYSTEM_PROJECT: &str = "*";

/// What a log record is. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// A trace event (any client kind).
    Span,
    /// A guard-mode request; recorded, but not counted in trace totals.
    Guard,
    /// A rule fired on the preceding event.
    Violation,
    /// A rule failed (error or limit) on the preceding event.
    RuleError,
    /// Bodies of earlier records were erased: who, when, why, and which positions.
    Erasure,
    /// The security audit log's chain head at this point of the event log.
    AuditCheckpoint,
    /// A retention sweep removed the log's prefix: the new base and what was carried over.
    Retention,
}

impl RecordType {
    pub const ALL: [RecordType; 7] = [
        RecordType::Span,
        RecordType::Guard,
        RecordType::Violation,
        RecordType::RuleError,
        RecordType::Erasure,
        RecordType::AuditCheckpoint,
        RecordType::Retention,
    ];

    /// The type with this stored name.
    pub fn from_name(name: &str) -> Option<RecordType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Span => "span",
            RecordType::Guard => "guard",
            RecordType::Violation => "violation",
            RecordType::RuleError => "rule_error",
            RecordType::Erasure => "erasure",
            RecordType::AuditCheckpoint => "audit_checkpoint",
            RecordType::Retention => "retention",
        }
    }
}

#[derive(Iden, Clone, Copy)]
pub enum DashboardSessions {
    Table,
    IdHash,
    KeyId,
    KeyRotatedAt,
    Project,
    CreatedAt,
    ExpiresAt,
    EndedAt,
}
