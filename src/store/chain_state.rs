//! The chain's authenticated state in the database: where the writer continues (the head) and
//! the head checkpoint row it keeps up to date in every commit.
//!
//! At start-up the writer continues from the log's last record, unless the authenticated head
//! checkpoint lies beyond it: then records were cut off the tail, and the writer continues from
//! the checkpoint so the gap stays visible to `verify` instead of being papered over by new
//! records linked to the truncated tail.

use sqlx::{Row, SqliteConnection};

use super::StoreError;
use super::chain::{self, ChainKey, Hash, StateTag};

/// Position and link of the last record (or of the base, or genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub link: Hash,
}

fn parse_link(seq: i64, link: &str) -> Result<Hash, StoreError> {
    chain::from_hex(link).ok_or(StoreError::Corrupt {
        seq,
        reason: "link is not 64 hex digits".into(),
    })
}

async fn tagged_row(
    conn: &mut SqliteConnection,
    sql: &'static str,
    what: StateTag,
    key: &ChainKey,
) -> Result<Option<(Head, bool)>, StoreError> {
    let Some(row) = sqlx::query(sql).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let seq: i64 = row.try_get("seq")?;
    let link = parse_link(seq, &row.try_get::<String, _>("link")?)?;
    let tag: Option<String> = row.try_get("tag")?;
    let authentic = tag.and_then(|t| chain::from_hex(&t)) == Some(key.state_tag(what, seq, &link));
    Ok(Some((Head { seq, link }, authentic)))
}

/// Where the writer continues appending.
pub async fn load_head(conn: &mut SqliteConnection, key: &ChainKey) -> Result<Head, StoreError> {
    let last = sqlx::query("SELECT seq, link FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let tail = match last {
        Some(row) => {
            let seq: i64 = row.try_get("seq")?;
            Head {
                seq,
                link: parse_link(seq, &row.try_get::<String, _>("link")?)?,
            }
        }
        None => match tagged_row(
            conn,
            "SELECT seq, link, tag FROM chain_base WHERE id = 1",
            StateTag::Base,
            key,
        )
        .await?
        {
            Some((base, _)) => base,
            None => Head {
                seq: 0,
                link: chain::GENESIS,
            },
        },
    };
    match tagged_row(
        conn,
        "SELECT seq, link, tag FROM chain_head WHERE id = 1",
        StateTag::Head,
        key,
    )
    .await?
    {
        Some((head, true)) if head.seq > tail.seq => {
            tracing::error!(
                log_ends_at = tail.seq,
                head_checkpoint = head.seq,
                "the event log ends before its authenticated head checkpoint: records were cut off its tail; new records continue from the checkpoint so `audittrail verify` keeps reporting the gap"
            );
            Ok(head)
        }
        Some((head, false)) => {
            tracing::error!(
                seq = head.seq,
                "the head checkpoint row is not authenticated by the chain key (forged or edited, or the secret key changed); run `audittrail verify`"
            );
            Ok(tail)
        }
        _ => Ok(tail),
    }
}

/// Records `head` as the authenticated head checkpoint; call it inside every transaction that
/// appends records.
pub async fn write_head(
    conn: &mut SqliteConnection,
    key: &ChainKey,
    head: &Head,
) -> Result<(), StoreError> {
    let tag = key.state_tag(StateTag::Head, head.seq, &head.link);
    sqlx::query(
        "INSERT INTO chain_head (id, seq, link, tag) VALUES (1, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, link = excluded.link, tag = excluded.tag",
    )
    .bind(head.seq)
    .bind(chain::to_hex(&head.link))
    .bind(chain::to_hex(&tag))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the chain's base (the last link before the first kept record), authenticated.
/// Retention sweeps call it in the transaction that removes the prefix.
pub async fn write_base(
    conn: &mut SqliteConnection,
    key: &ChainKey,
    base: &Head,
) -> Result<(), StoreError> {
    let tag = key.state_tag(StateTag::Base, base.seq, &base.link);
    sqlx::query(
        "INSERT INTO chain_base (id, seq, link, tag) VALUES (1, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, link = excluded.link, tag = excluded.tag",
    )
    .bind(base.seq)
    .bind(chain::to_hex(&base.link))
    .bind(chain::to_hex(&tag))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
